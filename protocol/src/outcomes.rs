//! Per-version outcomes: what the worker writes to Workers Analytics Engine for every
//! answer, and the query `scripts/rollout` reads a version's error rate with. One
//! layout, spelled once, so the writer and the reader cannot drift apart.
//!
//! Cloudflare's invocation analytics count a response the worker returned on purpose —
//! its JSON 503 when the origin is down, a 500 passed through — as a success. This
//! dataset counts every answer by its status: a 5xx is an error, whatever produced it.
//!
//! Layout of one data point (Analytics Engine columns):
//! - `index1`: the version id (the sampling key: each version is sampled on its own);
//! - `blob1`: the version id, `blob2`: what was served (a content class, `image`,
//!   `upload`, `purge`, `health`, or `none` before routing), `blob3`: `ok` or `error`,
//!   `blob4`: the origin arm (`stable`, `canary`, or empty when no origin was involved);
//! - `double1`: the status, `double2`: 1 for an error else 0, `double3`: the edge's
//!   milliseconds.

/// The wrangler binding and the dataset it writes.
pub const BINDING: &str = "OUTCOMES";
pub const DATASET: &str = "course_edge_outcomes";
/// The version-metadata binding (`[version_metadata]` in wrangler.toml).
pub const VERSION_BINDING: &str = "CF_VERSION_METADATA";

/// One answer, as written.
#[derive(Debug, Clone, PartialEq)]
pub struct DataPoint {
    pub index: String,
    pub blobs: [String; 4],
    pub doubles: [f64; 3],
}

/// Whether an answer counts as an error: any 5xx.
pub fn is_error(status: u16) -> bool {
    (500..600).contains(&status)
}

/// The data point for one answer.
pub fn data_point(version: &str, served: &str, arm: &str, status: u16, edge_ms: f64) -> DataPoint {
    let error = is_error(status);
    DataPoint {
        index: version.to_owned(),
        blobs: [
            version.to_owned(),
            served.to_owned(),
            String::from(if error { "error" } else { "ok" }),
            arm.to_owned(),
        ],
        doubles: [
            f64::from(status),
            if error { 1.0 } else { 0.0 },
            if edge_ms.is_finite() { edge_ms } else { 0.0 },
        ],
    }
}

/// Whether `id` is a version id as Cloudflare spells them (a lowercase or uppercase
/// hyphenated UUID). Only such ids are put into a query.
pub fn is_version_id(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The SQL API query for a version's answers and errors over the last `seconds`,
/// counting each sampled row by its `_sample_interval`. `None` for an id that is not a
/// version id (it would be spliced into SQL).
pub fn error_rate_query(version: &str, seconds: u64) -> Option<String> {
    is_version_id(version).then(|| {
        format!(
            "SELECT SUM(_sample_interval) AS requests, SUM(_sample_interval * double2) AS errors \
             FROM {DATASET} WHERE index1 = '{version}' AND timestamp > NOW() - INTERVAL '{seconds}' SECOND \
             FORMAT JSON"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: &str = "0f8a3c52-7d6e-4b1a-9c2d-3e4f5a6b7c8d";

    #[test]
    fn fives_are_errors_and_nothing_else_is() {
        for (status, error) in [(200, false), (304, false), (404, false), (429, false)] {
            assert_eq!(is_error(status), error, "{status}");
        }
        for status in [500, 502, 503, 504, 599] {
            assert!(is_error(status), "{status}");
        }
    }

    #[test]
    fn a_data_point_puts_each_field_where_the_query_reads_it() {
        let ok = data_point(V, "catalog", "stable", 200, 3.5);
        assert_eq!(ok.index, V);
        assert_eq!(ok.blobs, [V, "catalog", "ok", "stable"].map(String::from));
        assert_eq!(ok.doubles, [200.0, 0.0, 3.5]);
        // The worker's own JSON 503 (origin down, nothing cached) is an error.
        let down = data_point(V, "feed", "canary", 503, f64::NAN);
        assert_eq!(down.blobs[2], "error");
        assert_eq!(down.doubles, [503.0, 1.0, 0.0]);
        let query = error_rate_query(V, 300).unwrap();
        // index1 is the version, double2 the error flag.
        assert!(query.contains(&format!("index1 = '{V}'")), "{query}");
        assert!(query.contains("SUM(_sample_interval * double2) AS errors"));
        assert!(query.contains("SUM(_sample_interval) AS requests"));
        assert!(query.contains("INTERVAL '300' SECOND"));
        assert!(query.contains(&format!("FROM {DATASET} ")));
    }

    #[test]
    fn only_version_ids_reach_a_query() {
        assert!(is_version_id(V));
        assert!(is_version_id(&V.to_uppercase()));
        for bad in [
            "",
            "latest",
            "0f8a3c52-7d6e-4b1a-9c2d-3e4f5a6b7c8",
            "0f8a3c52-7d6e-4b1a-9c2d-3e4f5a6b7c8z",
            "0f8a3c52' OR '1'='1",
            "0f8a3c527d6e4b1a9c2d3e4f5a6b7c8d",
        ] {
            assert!(!is_version_id(bad), "{bad}");
            assert_eq!(error_rate_query(bad, 60), None);
        }
    }
}
