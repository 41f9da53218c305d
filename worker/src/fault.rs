//! Failure injection for the drills (`scripts/drill`): with `FAULT_INJECTION=on`, the
//! origin's purge secret may switch this isolate's R2 reads off and on with
//! `POST /__edge/fault?r2=down|up`, so a drill sees what visitors get while R2 cannot be
//! read. Off (the default, and in production) the route does not exist. Pure: the
//! switch is parsed here; the glue keeps its state per isolate (`wrangler dev` runs one).

/// The R2 switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum R2 {
    Up,
    Down,
}

impl R2 {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
        }
    }
}

/// Why a fault request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Injection is off: the route does not exist (404).
    Off,
    /// Without the purge secret (401).
    Unauthorized,
    /// Not a switch this route knows (400, naming `r2`).
    BadSwitch(String),
}

/// The decision on `POST /__edge/fault`: injection must be on, the bearer token the
/// purge secret (checked by the caller, in constant time), the query a known switch.
pub fn decide(enabled: bool, authorized: bool, query: Option<&str>) -> Result<R2, Refused> {
    if !enabled {
        return Err(Refused::Off);
    }
    if !authorized {
        return Err(Refused::Unauthorized);
    }
    parse(query).map_err(Refused::BadSwitch)
}

/// The switch a fault request asks for: exactly `r2=down` or `r2=up`.
pub fn parse(query: Option<&str>) -> Result<R2, String> {
    match query {
        Some("r2=down") => Ok(R2::Down),
        Some("r2=up") => Ok(R2::Up),
        _ => Err(String::from("the query is r2=down or r2=up")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_exists_only_with_injection_on_and_the_secret() {
        assert_eq!(decide(false, true, Some("r2=down")), Err(Refused::Off));
        assert_eq!(decide(false, false, Some("r2=down")), Err(Refused::Off));
        assert_eq!(
            decide(true, false, Some("r2=down")),
            Err(Refused::Unauthorized)
        );
        assert!(matches!(
            decide(true, true, Some("r2=sideways")),
            Err(Refused::BadSwitch(_))
        ));
        assert_eq!(decide(true, true, Some("r2=up")), Ok(R2::Up));
    }

    #[test]
    fn only_the_two_switches_parse() {
        assert_eq!(parse(Some("r2=down")), Ok(R2::Down));
        assert_eq!(parse(Some("r2=up")), Ok(R2::Up));
        for bad in [
            None,
            Some(""),
            Some("r2=off"),
            Some("r2=down&x=1"),
            Some("R2=down"),
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
