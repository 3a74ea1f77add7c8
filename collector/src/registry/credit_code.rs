//! The unified social credit code (统一社会信用代码), GB 32100-2015: 18 characters from a
//! 31-character alphabet, the last one a check character over the first 17.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The code's alphabet in value order: digits, then letters without I, O, Z, S and V.
pub const ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

/// Weight of position `i` (0-based, of the first 17) is 3^i mod 31.
pub const WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

/// A unified social credit code whose length, alphabet and check character are valid.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CreditCode(String);

/// Why a string is not a unified social credit code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreditCodeError {
    /// Not 18 characters.
    #[error("a unified social credit code has 18 characters, {found:?} has {len}")]
    Length {
        /// The input.
        found: String,
        /// Its length in characters.
        len: usize,
    },
    /// A character outside the GB 32100 alphabet.
    #[error("character {ch:?} at position {position} of {found:?} is not allowed (use 0-9 and A-Z without I, O, S, V, Z)")]
    Character {
        /// The input.
        found: String,
        /// 1-based position.
        position: usize,
        /// The character.
        ch: char,
    },
    /// The 18th character does not match the first 17.
    #[error("check character of {found:?} is {given:?}, but the first 17 characters give {expected:?}: a typo?")]
    Check {
        /// The input.
        found: String,
        /// The 18th character as given.
        given: char,
        /// The one the first 17 give.
        expected: char,
    },
}

fn value(c: u8) -> Option<u32> {
    ALPHABET.iter().position(|&a| a == c).map(|v| v as u32)
}

/// The check character for the first 17 characters of a code, which must be in the alphabet.
pub fn check_character(first17: &[u8; 17]) -> Option<char> {
    let mut sum = 0u32;
    for (c, w) in first17.iter().zip(WEIGHTS) {
        sum += value(*c)? * w;
    }
    let check = (31 - sum % 31) % 31;
    Some(ALPHABET[check as usize] as char)
}

impl CreditCode {
    /// Parses and checks a code. Lowercase letters are accepted and upper-cased; surrounding
    /// whitespace is trimmed.
    pub fn parse(s: &str) -> Result<CreditCode, CreditCodeError> {
        let up = s.trim().to_ascii_uppercase();
        let len = up.chars().count();
        if len != 18 {
            return Err(CreditCodeError::Length {
                found: s.into(),
                len,
            });
        }
        for (i, ch) in up.chars().enumerate() {
            if !ch.is_ascii() || value(ch as u8).is_none() {
                return Err(CreditCodeError::Character {
                    found: s.into(),
                    position: i + 1,
                    ch,
                });
            }
        }
        let bytes = up.as_bytes();
        let first: [u8; 17] = bytes[..17].try_into().expect("18 ascii characters");
        let expected = check_character(&first).expect("alphabet checked above");
        let given = bytes[17] as char;
        if given != expected {
            return Err(CreditCodeError::Check {
                found: s.into(),
                given,
                expected,
            });
        }
        Ok(CreditCode(up))
    }

    /// Completes 17 characters with their check character (for generating test data).
    pub fn complete(first17: &str) -> Result<CreditCode, CreditCodeError> {
        let bytes: [u8; 17] =
            first17
                .as_bytes()
                .try_into()
                .map_err(|_| CreditCodeError::Length {
                    found: first17.into(),
                    len: first17.chars().count() + 1,
                })?;
        let check = check_character(&bytes).ok_or_else(|| {
            let (position, ch) = first17
                .chars()
                .enumerate()
                .find(|(_, c)| !c.is_ascii() || value(*c as u8).is_none())
                .map(|(i, c)| (i + 1, c))
                .unwrap_or((0, '?'));
            CreditCodeError::Character {
                found: first17.into(),
                position,
                ch,
            }
        })?;
        CreditCode::parse(&format!("{first17}{check}"))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CreditCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for CreditCode {
    type Err = CreditCodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CreditCode::parse(s)
    }
}

impl TryFrom<String> for CreditCode {
    type Error = CreditCodeError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        CreditCode::parse(&s)
    }
}

impl From<CreditCode> for String {
    fn from(c: CreditCode) -> String {
        c.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_powers_of_three_mod_31() {
        let mut w = 1u32;
        for expected in WEIGHTS {
            assert_eq!(w, expected);
            w = w * 3 % 31;
        }
    }

    #[test]
    fn published_codes_of_shenzhen_companies_are_valid() {
        // Shenzhen Tencent Computer Systems Co., Ltd. and Huawei Technologies Co., Ltd.
        for code in ["9144030071526726XG", "914403001922038216"] {
            assert_eq!(CreditCode::parse(code).unwrap().as_str(), code);
        }
    }

    #[test]
    fn lowercase_and_whitespace_are_normalised() {
        let c = CreditCode::parse(" 9144030071526726xg ").unwrap();
        assert_eq!(c.as_str(), "9144030071526726XG");
    }

    #[test]
    fn a_changed_character_fails_the_check() {
        let err = CreditCode::parse("9144030071526727XG").unwrap_err();
        assert!(
            matches!(err, CreditCodeError::Check { given: 'G', .. }),
            "{err}"
        );
    }

    #[test]
    fn a_check_value_of_zero_is_written_as_0() {
        // 91440300MA5F1234? has check value 31 - (sum mod 31) = 31 → '0' for some body; find one.
        let body = (0..31)
            .map(|i| format!("91440300MA5F1234{}", ALPHABET[i] as char))
            .find(|b| check_character(b.as_bytes().try_into().unwrap()) == Some('0'))
            .expect("one of 31 last characters gives check 0");
        assert!(CreditCode::parse(&format!("{body}0")).is_ok());
    }

    #[test]
    fn letters_outside_the_alphabet_and_wrong_lengths_are_refused() {
        assert!(matches!(
            CreditCode::parse("91440300MA5F1234I2"),
            Err(CreditCodeError::Character {
                position: 17,
                ch: 'I',
                ..
            })
        ));
        assert!(matches!(
            CreditCode::parse("9144030071526726X"),
            Err(CreditCodeError::Length { len: 17, .. })
        ));
    }

    #[test]
    fn complete_appends_the_check_character() {
        assert!(CreditCode::complete("91440300715267").is_err());
        assert_eq!(
            CreditCode::complete("9144030071526726X").unwrap().as_str(),
            "9144030071526726XG"
        );
    }
}
