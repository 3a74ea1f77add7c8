//! Register words to numbers.

use serde::Deserialize;

/// How a value is encoded in registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataType {
    /// One register, unsigned.
    U16,
    /// One register, two's complement.
    I16,
    /// Two registers, unsigned.
    U32,
    /// Two registers, two's complement.
    I32,
    /// Two registers, IEEE 754 single precision.
    F32,
}

impl DataType {
    /// How many registers it spans.
    pub fn registers(self) -> u16 {
        match self {
            DataType::U16 | DataType::I16 => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
        }
    }
}

/// Which of two registers holds the high word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WordOrder {
    /// The first register is the high word (big-endian words; the common default).
    #[default]
    Big,
    /// The first register is the low word ("word-swapped").
    Little,
}

/// The raw value of `words` read for `data_type`; `None` if there are not enough words.
pub fn decode(words: &[u16], data_type: DataType, order: WordOrder) -> Option<f64> {
    let w = |i: usize| words.get(i).copied();
    Some(match data_type {
        DataType::U16 => f64::from(w(0)?),
        DataType::I16 => f64::from(w(0)? as i16),
        DataType::U32 | DataType::I32 | DataType::F32 => {
            let (hi, lo) = match order {
                WordOrder::Big => (w(0)?, w(1)?),
                WordOrder::Little => (w(1)?, w(0)?),
            };
            let bits = (u32::from(hi) << 16) | u32::from(lo);
            match data_type {
                DataType::U32 => f64::from(bits),
                DataType::I32 => f64::from(bits as i32),
                _ => f64::from(f32::from_bits(bits)),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_data_type_decodes_in_both_word_orders() {
        assert_eq!(decode(&[720], DataType::U16, WordOrder::Big), Some(720.0));
        assert_eq!(decode(&[0xFFFE], DataType::I16, WordOrder::Big), Some(-2.0));
        assert_eq!(
            decode(&[1, 2], DataType::U32, WordOrder::Big),
            Some(65_538.0)
        );
        assert_eq!(
            decode(&[2, 1], DataType::U32, WordOrder::Little),
            Some(65_538.0)
        );
        assert_eq!(
            decode(&[0xFFFF, 0xFFFF], DataType::I32, WordOrder::Big),
            Some(-1.0)
        );
        let bits = 0.55f32.to_bits();
        let (hi, lo) = ((bits >> 16) as u16, bits as u16);
        assert_eq!(
            decode(&[hi, lo], DataType::F32, WordOrder::Big),
            Some(f64::from(0.55f32))
        );
        assert_eq!(
            decode(&[lo, hi], DataType::F32, WordOrder::Little),
            Some(f64::from(0.55f32))
        );
        assert_eq!(decode(&[1], DataType::F32, WordOrder::Big), None);
    }
}
