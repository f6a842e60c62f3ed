//! Session settings: what `SET`, `SHOW`, `RESET` and `current_setting()` read and write.
//!
//! Only parameters drivers and BI tools actually send are known; their values are kept as
//! text, as PostgreSQL reports them. Unknown names are refused with 42704 like PostgreSQL,
//! except dotted custom names (`myapp.x`), which PostgreSQL also accepts. `datafusion.*`
//! is refused: engine options are the operator's, not the client's.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::parse_duration;
use crate::error::Error;

/// The `server_version` biproxy reports: PostgreSQL 15-compatible, with a biproxy suffix.
pub const SERVER_VERSION: &str = concat!("15.0 (biproxy ", env!("CARGO_PKG_VERSION"), ")");

/// The number clients compare against (`server_version_num`).
pub const SERVER_VERSION_NUM: &str = "150000";

/// A known parameter: its canonical name, default, whether clients may change it, and
/// the description shown by `SHOW ALL`.
struct Param {
    name: &'static str,
    default: &'static str,
    settable: bool,
    description: &'static str,
}

const PARAMS: &[Param] = &[
    Param {
        name: "application_name",
        default: "",
        settable: true,
        description: "Sets the application name to be reported in statistics and logs.",
    },
    Param {
        name: "client_encoding",
        default: "UTF8",
        settable: true,
        description: "Sets the client's character set encoding.",
    },
    Param {
        name: "client_min_messages",
        default: "notice",
        settable: true,
        description: "Sets the message levels that are sent to the client.",
    },
    Param {
        name: "DateStyle",
        default: "ISO, MDY",
        settable: true,
        description: "Sets the display format for date and time values.",
    },
    Param {
        name: "default_transaction_isolation",
        default: "read committed",
        settable: true,
        description: "Sets the transaction isolation level of each new transaction.",
    },
    Param {
        name: "default_transaction_read_only",
        default: "on",
        settable: true,
        description: "biproxy is read-only: every transaction is read-only.",
    },
    Param {
        name: "extra_float_digits",
        default: "1",
        settable: true,
        description: "Sets the number of digits displayed for floating-point values.",
    },
    Param {
        name: "integer_datetimes",
        default: "on",
        settable: false,
        description: "Shows whether datetimes are integer based.",
    },
    Param {
        name: "IntervalStyle",
        default: "postgres",
        settable: true,
        description: "Sets the display format for interval values.",
    },
    Param {
        name: "is_superuser",
        default: "off",
        settable: false,
        description: "Shows whether the current user is a superuser.",
    },
    Param {
        name: "lc_messages",
        default: "C",
        settable: true,
        description: "Sets the language in which messages are displayed.",
    },
    Param {
        name: "max_identifier_length",
        default: "63",
        settable: false,
        description: "Shows the maximum identifier length.",
    },
    Param {
        name: "search_path",
        default: "\"$user\", public",
        settable: true,
        description: "Sets the schema search order for names that are not schema-qualified.",
    },
    Param {
        name: "server_encoding",
        default: "UTF8",
        settable: false,
        description: "Shows the server (database) character set encoding.",
    },
    Param {
        name: "server_version",
        default: SERVER_VERSION,
        settable: false,
        description: "Shows the server version.",
    },
    Param {
        name: "server_version_num",
        default: SERVER_VERSION_NUM,
        settable: false,
        description: "Shows the server version as an integer.",
    },
    Param {
        name: "standard_conforming_strings",
        default: "on",
        settable: true,
        description: "Causes '...' strings to treat backslashes literally.",
    },
    Param {
        name: "statement_timeout",
        default: "0",
        settable: true,
        description: "Sets the maximum allowed duration of any statement.",
    },
    Param {
        name: "TimeZone",
        default: "UTC",
        settable: true,
        description: "Sets the time zone for displaying and interpreting time stamps.",
    },
    Param {
        name: "transaction_isolation",
        default: "read committed",
        settable: true,
        description: "Sets the current transaction's isolation level.",
    },
    Param {
        name: "transaction_read_only",
        default: "on",
        settable: false,
        description: "biproxy is read-only.",
    },
];

fn param(name: &str) -> Option<&'static Param> {
    PARAMS.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

/// The current values of one session's parameters.
#[derive(Debug, Clone)]
pub struct Settings {
    values: BTreeMap<String, String>,
    custom: BTreeMap<String, String>,
    default_timeout: Option<Duration>,
}

impl Settings {
    /// Defaults, with the server's default statement timeout and the startup parameters
    /// the client sent (unknown startup parameters are ignored, as PostgreSQL ignores
    /// none but we only track those we know).
    pub fn new<'a>(
        default_timeout: Option<Duration>,
        startup: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Settings {
        let mut s = Settings {
            values: PARAMS
                .iter()
                .map(|p| (p.name.to_owned(), p.default.to_owned()))
                .collect(),
            custom: BTreeMap::new(),
            default_timeout,
        };
        if let Some(t) = default_timeout {
            s.values
                .insert("statement_timeout".into(), format!("{}ms", t.as_millis()));
        }
        for (k, v) in startup {
            if param(k).is_some_and(|p| p.settable) {
                let _ = s.set(k, v);
            }
        }
        s
    }

    /// `SET name = value`.
    ///
    /// # Errors
    /// 42704 for an unknown name, 55P02-like refusal (reported as 22023) for read-only
    /// parameters, 22023 for a value that does not parse.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), Error> {
        if name.to_ascii_lowercase().starts_with("datafusion.") {
            return Err(Error::PermissionDenied(format!(
                "parameter \"{name}\" is an engine option and cannot be changed by clients"
            )));
        }
        let Some(p) = param(name) else {
            if name.contains('.') {
                self.custom
                    .insert(name.to_ascii_lowercase(), value.to_owned());
                return Ok(());
            }
            return Err(Error::UnknownSetting(name.to_owned()));
        };
        if !p.settable {
            return Err(Error::InvalidValue(format!(
                "parameter \"{}\" cannot be changed",
                p.name
            )));
        }
        let value = normalize(p.name, value)?;
        self.values.insert(p.name.to_owned(), value);
        Ok(())
    }

    /// `RESET name`.
    ///
    /// # Errors
    /// 42704 for an unknown name.
    pub fn reset(&mut self, name: &str) -> Result<(), Error> {
        let fresh = Settings::new(self.default_timeout, std::iter::empty());
        match param(name) {
            Some(p) => {
                let v = fresh.values[p.name].clone();
                self.values.insert(p.name.to_owned(), v);
                Ok(())
            }
            None if self.custom.remove(&name.to_ascii_lowercase()).is_some() => Ok(()),
            None => Err(Error::UnknownSetting(name.to_owned())),
        }
    }

    /// `RESET ALL` and `DISCARD ALL`.
    pub fn reset_all(&mut self) {
        *self = Settings::new(self.default_timeout, std::iter::empty());
    }

    /// The value `SHOW name` and `current_setting(name)` report.
    ///
    /// # Errors
    /// 42704 for an unknown name.
    pub fn get(&self, name: &str) -> Result<String, Error> {
        match param(name) {
            Some(p) => Ok(self.values[p.name].clone()),
            None => self
                .custom
                .get(&name.to_ascii_lowercase())
                .cloned()
                .ok_or_else(|| Error::UnknownSetting(name.to_owned())),
        }
    }

    /// Every parameter as (name, value, description), for `SHOW ALL`.
    pub fn all(&self) -> Vec<(String, String, String)> {
        PARAMS
            .iter()
            .map(|p| {
                (
                    p.name.to_owned(),
                    self.values[p.name].clone(),
                    p.description.to_owned(),
                )
            })
            .collect()
    }

    /// The canonical spelling of a known parameter (`datestyle` → `DateStyle`), for the
    /// column name of `SHOW` and for `ParameterStatus` messages.
    pub fn canonical_name(name: &str) -> String {
        param(name).map_or_else(|| name.to_ascii_lowercase(), |p| p.name.to_owned())
    }

    /// The statement timeout in force; `None` means none.
    pub fn statement_timeout(&self) -> Option<Duration> {
        parse_duration(&self.values["statement_timeout"])
            .ok()
            .filter(|d| !d.is_zero())
    }
}

/// Check and normalise a value the way PostgreSQL reports it back.
fn normalize(name: &str, value: &str) -> Result<String, Error> {
    match name {
        "statement_timeout" => {
            let d = parse_duration(value).map_err(|m| {
                Error::InvalidValue(format!("invalid value for parameter \"statement_timeout\": {m}"))
            })?;
            Ok(if d.is_zero() { "0".into() } else { format!("{}ms", d.as_millis()) })
        }
        "client_encoding" => match value.to_ascii_uppercase().replace('-', "").as_str() {
            "UTF8" | "UNICODE" => Ok("UTF8".into()),
            other => Err(Error::NotSupported(format!(
                "client_encoding \"{other}\" is not supported; biproxy speaks UTF8 only"
            ))),
        },
        "extra_float_digits" => value
            .trim()
            .parse::<i32>()
            .ok()
            .filter(|n| (-15..=3).contains(n))
            .map(|n| n.to_string())
            .ok_or_else(|| {
                Error::InvalidValue(format!(
                    "invalid value for parameter \"extra_float_digits\": \"{value}\" (allowed: -15 to 3)"
                ))
            }),
        _ => Ok(value.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_show_reset_round_trip() {
        let mut s = Settings::new(None, std::iter::empty());
        s.set("DATESTYLE", "ISO, DMY").unwrap();
        assert_eq!(s.get("datestyle").unwrap(), "ISO, DMY");
        s.reset("DateStyle").unwrap();
        assert_eq!(s.get("DateStyle").unwrap(), "ISO, MDY");
    }

    #[test]
    fn statement_timeout_parses_units_and_bare_milliseconds() {
        let mut s = Settings::new(None, std::iter::empty());
        s.set("statement_timeout", "1500").unwrap();
        assert_eq!(s.statement_timeout(), Some(Duration::from_millis(1500)));
        s.set("statement_timeout", "2s").unwrap();
        assert_eq!(s.get("statement_timeout").unwrap(), "2000ms");
        s.set("statement_timeout", "0").unwrap();
        assert_eq!(s.statement_timeout(), None);
    }

    #[test]
    fn unknown_and_engine_parameters_are_refused() {
        let mut s = Settings::new(None, std::iter::empty());
        assert_eq!(s.set("nonsense", "1").unwrap_err().sqlstate().0, "42704");
        assert_eq!(
            s.set("datafusion.execution.batch_size", "1")
                .unwrap_err()
                .sqlstate()
                .0,
            "42501"
        );
        s.set("myapp.tenant", "x").unwrap();
        assert_eq!(s.get("MyApp.Tenant").unwrap(), "x");
        assert_eq!(
            s.set("server_version", "1").unwrap_err().sqlstate().0,
            "22023"
        );
    }
}
