//! Origin configuration: flags with environment fallbacks, read once at start and
//! printed (secrets masked) so an operator sees what the process actually runs with.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "course-origin",
    about = "course-edge origin: hot-path read APIs behind the edge"
)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port (printed on start).
    #[arg(long, env = "ORIGIN_LISTEN", default_value = "127.0.0.1:8788")]
    pub listen: SocketAddr,

    /// Directory for the embedded SQLite database (used when DATABASE_URL is unset).
    #[arg(long, env = "ORIGIN_DATA_DIR", default_value = ".dev-state/origin")]
    pub data_dir: PathBuf,

    /// `postgres://…` to use PostgreSQL instead of the embedded SQLite store.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Log format: `text` for people, `json` for collectors.
    #[arg(long, env = "ORIGIN_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

impl Config {
    /// Checks what clap cannot: that the database URL names an engine we speak.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(url) = &self.database_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(format!(
                "DATABASE_URL must start with postgres:// (got {}); unset it to use the embedded SQLite store",
                mask_url(url)
            ));
        }
        Ok(())
    }

    /// One line for the log, with credentials masked.
    pub fn describe(&self) -> String {
        let store = match &self.database_url {
            Some(url) => mask_url(url),
            None => format!("sqlite:{}", self.data_dir.join("origin.db").display()),
        };
        format!(
            "listen={} store={store} log_format={}",
            self.listen, self.log_format
        )
    }
}

/// `scheme://user:secret@host/db` -> `scheme://user:***@host/db`.
pub fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return String::from("***");
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}")
            } else {
                format!("{scheme}://{user}@{host}")
            }
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            mask_url("postgres://app:s3cret@db:5432/test"),
            "postgres://app:***@db:5432/test"
        );
        assert_eq!(mask_url("postgres://db/test"), "postgres://db/test");
        assert_eq!(mask_url("garbage"), "***");
    }

    #[test]
    fn only_postgres_urls_are_accepted() {
        let mut config = Config::parse_from(["course-origin"]);
        assert!(config.validate().is_ok());
        config.database_url = Some("mysql://root:pw@x/db".into());
        let err = config.validate().unwrap_err();
        assert!(err.contains("postgres://") && !err.contains("pw"), "{err}");
    }
}
