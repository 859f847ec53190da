//! Choice settings written as names: the `named_choice!` macro that gives an enum its text form,
//! and the refusal that lists every allowed name.

/// Gives a choice setting its text form: written as its name, read from it, and refused with
/// every allowed name listed (a derived `Deserialize`, through the configuration loader, names
/// none of them).
macro_rules! named_choice {
    ($name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        impl $name {
            /// Every name it may be written as.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// Its name in the configuration.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    _ => Err($crate::config::choice::unknown_choice(s, Self::NAMES)),
                }
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> Result<Self, D::Error> {
                <String as ::serde::Deserialize>::deserialize(deserializer)?
                    .parse()
                    .map_err(::serde::de::Error::custom)
            }
        }
    };
}

pub(crate) use named_choice;

/// The error of a choice setting given `value`, naming every allowed one.
pub(crate) fn unknown_choice(value: &str, names: &[&str]) -> String {
    let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    format!(
        "unknown value {value:?}, expected one of {}",
        names.join(", ")
    )
}
