//! Helpers shared by the config crate's tests.

#![allow(dead_code)]

use config::{Config, ConfigError};

/// Parses `yaml`, expecting success.
pub fn parse(yaml: &str) -> Config {
    match Config::from_yaml(yaml) {
        Ok(config) => config,
        Err(err) => panic!("expected a valid config, got: {err}\n{yaml}"),
    }
}

/// Parses `yaml`, expecting failure.
pub fn parse_err(yaml: &str) -> ConfigError {
    match Config::from_yaml(yaml) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(err) => err,
    }
}

/// Asserts `err` is a validation error on `field` whose reason contains `reason`.
pub fn assert_invalid(err: &ConfigError, field: &str, reason: &str) {
    match err {
        ConfigError::Invalid {
            field: f,
            reason: r,
        } => {
            assert_eq!(f, field, "wrong field in: {err}");
            assert!(r.contains(reason), "reason {r:?} lacks {reason:?}");
        }
        other => panic!("expected Invalid on {field}, got {other:?}"),
    }
    assert!(err.to_string().contains(&format!("{field}: ")), "{err}");
}
