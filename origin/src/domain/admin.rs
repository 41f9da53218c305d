//! Admin edits, parsed once: a `PUT` carries every editable field (a full replacement
//! of what an editor may change; ids, slugs, views and lessons are not editable here).
//! Each parser bounds its input and names the offending field.

use protocol::{Locale, Plan};
use serde_json::{Map, Value};

use super::input::{InputError, Level, Tag};
use super::model::Rendition;

/// Most bytes an admin JSON body may have.
pub const MAX_ADMIN_BODY_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CourseEdit {
    pub title: String,
    pub summary: String,
    pub locale: Locale,
    pub level: Level,
    pub tags: Vec<Tag>,
    pub plan: Plan,
    pub cover_image: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VideoEdit {
    pub title: String,
    pub duration_secs: i64,
    pub hls_playlist: String,
    pub renditions: Vec<Rendition>,
}

fn object(body: &[u8], fields: &[&'static str]) -> Result<Map<String, Value>, InputError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| InputError::new("body", format!("not JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(InputError::new("body", "send a JSON object"));
    };
    if let Some(unknown) = map.keys().find(|k| !fields.contains(&k.as_str())) {
        let shown: String = unknown.chars().take(64).collect();
        return Err(InputError::new(
            "body",
            format!(
                "unknown field {shown:?}; the fields are {}",
                fields.join(", ")
            ),
        ));
    }
    Ok(map)
}

fn text(
    map: &Map<String, Value>,
    field: &'static str,
    min: usize,
    max: usize,
) -> Result<String, InputError> {
    let Some(Value::String(s)) = map.get(field) else {
        return Err(InputError::new(
            field,
            format!("{field} is a required string"),
        ));
    };
    let s = s.trim();
    let chars = s.chars().count();
    if chars < min || chars > max || s.chars().any(char::is_control) {
        return Err(InputError::new(
            field,
            format!("{field} is {min}-{max} characters without control characters"),
        ));
    }
    Ok(s.to_owned())
}

/// An R2 object key as the edge serves it: `[A-Za-z0-9._/-]`, no `..`, no leading `/`.
pub fn object_key(field: &'static str, s: &str) -> Result<String, InputError> {
    let ok = !s.is_empty()
        && s.len() <= 512
        && !s.starts_with('/')
        && !s
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(InputError::new(
            field,
            format!(
                "{field} is an object key of 1-512 characters of A-Z a-z 0-9 . _ - / without empty or dot segments"
            ),
        ))
    }
}

impl CourseEdit {
    pub const FIELDS: [&'static str; 7] = [
        "title",
        "summary",
        "locale",
        "level",
        "tags",
        "plan",
        "cover_image",
    ];

    pub fn parse(body: &[u8]) -> Result<Self, InputError> {
        let map = object(body, &Self::FIELDS)?;
        let locale = text(&map, "locale", 2, 2)?;
        let plan = text(&map, "plan", 1, 8)?;
        let tags = match map.get("tags") {
            Some(Value::Array(items)) if items.len() <= 16 => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| InputError::new("tags", "tags are strings"))
                        .and_then(|t| Tag::parse(t).map_err(|e| InputError::new("tags", e.message)))
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => {
                return Err(InputError::new(
                    "tags",
                    "tags is an array of at most 16 tags",
                ));
            }
        };
        let cover_image = match map.get("cover_image") {
            None | Some(Value::Null) => None,
            Some(Value::String(key)) => Some(object_key("cover_image", key)?),
            Some(_) => {
                return Err(InputError::new(
                    "cover_image",
                    "cover_image is an object key or null",
                ));
            }
        };
        Ok(Self {
            title: text(&map, "title", 1, 200)?,
            summary: text(&map, "summary", 0, 4000)?,
            locale: Locale::parse(&locale)
                .ok_or_else(|| InputError::new("locale", "locale is two lowercase letters"))?,
            level: Level::parse(&text(&map, "level", 1, 16)?)?,
            tags,
            plan: Plan::parse(&plan)
                .ok_or_else(|| InputError::new("plan", "plan is free or pro"))?,
            cover_image,
        })
    }
}

impl VideoEdit {
    pub const FIELDS: [&'static str; 4] = ["title", "duration_secs", "hls_playlist", "renditions"];

    pub fn parse(body: &[u8]) -> Result<Self, InputError> {
        let map = object(body, &Self::FIELDS)?;
        let duration_secs = map
            .get("duration_secs")
            .and_then(Value::as_i64)
            .filter(|d| (1..=24 * 3600).contains(d))
            .ok_or_else(|| {
                InputError::new(
                    "duration_secs",
                    "duration_secs is a whole number from 1 to 86400",
                )
            })?;
        let renditions: Vec<Rendition> = match map.get("renditions") {
            Some(v @ Value::Array(items)) if items.len() <= 16 => serde_json::from_value(v.clone())
                .map_err(|e| {
                    InputError::new(
                        "renditions",
                        format!("renditions are {{height, bandwidth, playlist}}: {e}"),
                    )
                })?,
            _ => {
                return Err(InputError::new(
                    "renditions",
                    "renditions is an array of at most 16 renditions",
                ));
            }
        };
        for r in &renditions {
            if !(1..=8192).contains(&r.height) {
                return Err(InputError::new("renditions", "a height is 1-8192"));
            }
            object_key("renditions", &r.playlist)?;
        }
        Ok(Self {
            title: text(&map, "title", 1, 200)?,
            duration_secs,
            hls_playlist: object_key("hls_playlist", &text(&map, "hls_playlist", 1, 512)?)?,
            renditions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn course(json: &str) -> Result<CourseEdit, InputError> {
        CourseEdit::parse(json.as_bytes())
    }

    const OK: &str = r#"{"title":"Rust","summary":"s","locale":"en","level":"beginner","tags":["rust"],"plan":"free","cover_image":"covers/rust.jpg"}"#;

    #[test]
    fn a_full_course_edit_parses() {
        let edit = course(OK).unwrap();
        assert_eq!(edit.title, "Rust");
        assert_eq!(edit.cover_image.as_deref(), Some("covers/rust.jpg"));
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            ("\"title\":\"Rust\"", "\"title\":\"\"", "title"),
            ("\"locale\":\"en\"", "\"locale\":\"english\"", "locale"),
            ("\"level\":\"beginner\"", "\"level\":\"guru\"", "level"),
            ("\"tags\":[\"rust\"]", "\"tags\":[\"Not A Tag\"]", "tags"),
            ("\"plan\":\"free\"", "\"plan\":\"gold\"", "plan"),
            (
                "\"cover_image\":\"covers/rust.jpg\"",
                "\"cover_image\":\"../etc/passwd\"",
                "cover_image",
            ),
            (
                "\"title\":\"Rust\"",
                "\"title\":\"Rust\",\"views\":9",
                "body",
            ),
            ("\"title\":\"Rust\",", "", "title"),
        ];
        for (from, to, field) in cases {
            let json = OK.replace(from, to);
            assert_eq!(course(&json).unwrap_err().field, field, "{json}");
        }
        assert_eq!(course("[]").unwrap_err().field, "body");
        assert_eq!(course("{").unwrap_err().field, "body");
    }

    #[test]
    fn video_edits_are_bounded() {
        let ok = r#"{"title":"T","duration_secs":60,"hls_playlist":"video/1/master.m3u8","renditions":[{"height":720,"bandwidth":1,"playlist":"video/1/720p.m3u8"}]}"#;
        assert_eq!(VideoEdit::parse(ok.as_bytes()).unwrap().duration_secs, 60);
        for (from, to, field) in [
            ("60", "0", "duration_secs"),
            ("\"video/1/master.m3u8\"", "\"/abs\"", "hls_playlist"),
            ("720", "0", "renditions"),
        ] {
            let json = ok.replacen(from, to, 1);
            assert_eq!(
                VideoEdit::parse(json.as_bytes()).unwrap_err().field,
                field,
                "{json}"
            );
        }
    }
}
