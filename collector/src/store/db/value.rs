//! Values both engines share: what a statement's parameters can be ([`Arg`]) and what a column
//! can be read as ([`FromColumn`]), through SQLite's storage classes ([`Value`]).

use super::DbError;

/// One value as both engines know it: SQLite's storage classes, which PostgreSQL's integer,
/// double, text and bytea types map onto.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// SQL NULL.
    Null,
    /// A 64-bit integer (also flags: 0 or 1).
    Int(i64),
    /// A double.
    Real(f64),
    /// UTF-8 text.
    Text(&'a str),
    /// Bytes.
    Blob(&'a [u8]),
}

/// A Rust value that can be a statement's parameter.
pub trait Arg {
    /// The value to bind.
    fn value(&self) -> Value<'_>;

    /// Why the value cannot be stored, if it cannot (an unsigned integer above `i64::MAX`):
    /// checked before binding, so the statement fails with [`DbError::Parameter`] naming it
    /// rather than storing something else.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Every argument's [`Arg::check`], as the error that names the first that fails.
pub(crate) fn check_args(args: &[&dyn Arg]) -> Result<(), DbError> {
    for (i, a) in args.iter().enumerate() {
        a.check().map_err(|reason| DbError::Parameter {
            index: i + 1,
            reason,
        })?;
    }
    Ok(())
}

macro_rules! int_arg {
    ($($t:ty),*) => {$(
        impl Arg for $t {
            fn value(&self) -> Value<'_> {
                Value::Int(i64::from(*self))
            }
        }
    )*};
}
int_arg!(i64, i32, i16, i8, u32, u16, u8, bool);

/// Unsigned integers above `i64::MAX` cannot be stored (both engines' integers are signed
/// 64-bit): [`Arg::check`] refuses them, so the statement fails naming the parameter.
macro_rules! unsigned_arg {
    ($($t:ty),*) => {$(
        impl Arg for $t {
            fn value(&self) -> Value<'_> {
                // Never bound when out of range: `check` refuses it first.
                Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
            }

            fn check(&self) -> Result<(), String> {
                match i64::try_from(*self) {
                    Ok(_) => Ok(()),
                    Err(_) => Err(format!(
                        "{} is above the largest integer the store keeps ({})",
                        self,
                        i64::MAX
                    )),
                }
            }
        }
    )*};
}
unsigned_arg!(u64, usize);

impl Arg for f64 {
    fn value(&self) -> Value<'_> {
        Value::Real(*self)
    }
}

impl Arg for str {
    fn value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl Arg for String {
    fn value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl Arg for [u8] {
    fn value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}

impl Arg for Vec<u8> {
    fn value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}

impl<T: Arg + ?Sized> Arg for &T {
    fn value(&self) -> Value<'_> {
        (**self).value()
    }

    fn check(&self) -> Result<(), String> {
        (**self).check()
    }
}

impl<T: Arg> Arg for Option<T> {
    fn value(&self) -> Value<'_> {
        match self {
            Some(v) => v.value(),
            None => Value::Null,
        }
    }

    fn check(&self) -> Result<(), String> {
        self.as_ref().map_or(Ok(()), Arg::check)
    }
}

impl Arg for Value<'_> {
    fn value(&self) -> Value<'_> {
        *self
    }
}

/// A Rust type a column can be read as.
pub trait FromColumn: Sized {
    /// Converts the column's value.
    fn from_value(v: Value<'_>) -> Result<Self, String>;
}

impl FromColumn for i64 {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Int(i) => Ok(i),
            other => Err(format!("expected an integer, found {}", kind(&other))),
        }
    }
}

macro_rules! narrow_int {
    ($($t:ty),*) => {$(
        impl FromColumn for $t {
            fn from_value(v: Value<'_>) -> Result<Self, String> {
                let i = i64::from_value(v)?;
                <$t>::try_from(i).map_err(|_| format!("{i} does not fit in {}", stringify!($t)))
            }
        }
    )*};
}
narrow_int!(i32, u32, u64, usize, u16, u8);

impl FromColumn for bool {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        Ok(i64::from_value(v)? != 0)
    }
}

impl FromColumn for f64 {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Real(f) => Ok(f),
            // SQLite keeps a whole-numbered REAL as given; both engines' integer results of
            // arithmetic on reals are read as doubles.
            Value::Int(i) => Ok(i as f64),
            other => Err(format!("expected a number, found {}", kind(&other))),
        }
    }
}

impl FromColumn for String {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Text(s) => Ok(s.to_owned()),
            other => Err(format!("expected text, found {}", kind(&other))),
        }
    }
}

impl FromColumn for Vec<u8> {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Blob(b) => Ok(b.to_vec()),
            other => Err(format!("expected bytes, found {}", kind(&other))),
        }
    }
}

impl<T: FromColumn> FromColumn for Option<T> {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

pub(super) fn kind(v: &Value<'_>) -> &'static str {
    match v {
        Value::Null => "NULL",
        Value::Int(_) => "an integer",
        Value::Real(_) => "a real",
        Value::Text(_) => "text",
        Value::Blob(_) => "bytes",
    }
}
