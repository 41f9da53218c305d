//! The origin's domain: parsed request inputs ([`input`]) and the response models
//! ([`model`]). Inputs validate on `parse` and name the offending field on failure, so
//! handlers and the store only ever see valid values.

pub mod admin;
pub mod input;
pub mod model;

pub use admin::{CourseEdit, VideoEdit};
pub use input::{CatalogQuery, InputError, Level, SearchQuery, Slug, Tag, VideoId};
pub use model::*;
