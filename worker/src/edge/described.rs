//! `/img/…,format=json/<key>`: the description of a derivative (`image::describe`),
//! through the edge cache like the derivative itself, keyed apart from it and bound to
//! the source's ETag the same way (a stored answer is revalidated by one R2 `head`).

use worker::{Conditional, Env, Headers, Response};

use super::cache::{SOURCE_VERSION, Source};
use super::origin::runtime;
use super::{memory, now_ms, slot};
use crate::assets::ObjectKey;
use crate::config::Config;
use crate::error::EdgeError;
use crate::image::describe;
use crate::image::options::ImageOptions;
use crate::policy::stored::Entry;
use crate::timing::ServerTiming;

#[derive(Clone)]
pub(super) struct DescriptionSource {
    pub env: Env,
    pub config: Config,
    pub key: ObjectKey,
    pub options: ImageOptions,
}

impl Source for DescriptionSource {
    async fn fetch(
        &self,
        stored: Option<&Entry>,
        timing: &mut ServerTiming,
    ) -> Result<Response, EdgeError> {
        let bucket = super::assets::bucket(&self.env)?;
        let started = now_ms();
        let head = bucket
            .head(self.key.as_str())
            .await
            .map_err(super::assets::r2_failed)?;
        timing.add("r2-head", now_ms() - started);
        let Some(head) = head else {
            let missing = EdgeError::ObjectNotFound {
                key: self.key.as_str().to_owned(),
            };
            return super::images::answer_error(&missing, None, true);
        };
        let version = head.http_etag();
        if stored.and_then(|e| e.meta.source.as_deref()) == Some(version.as_str()) {
            let headers = Headers::new();
            headers.set(SOURCE_VERSION, &version).map_err(runtime)?;
            return Ok(Response::empty()
                .map_err(runtime)?
                .with_status(304)
                .with_headers(headers));
        }
        let declared = head
            .http_metadata()
            .content_type
            .unwrap_or_else(|| self.key.content_type().to_owned());
        let limits = &self.config.image_limits;
        if let Err(refused) = limits.check_source(head.size(), &declared) {
            return super::images::answer_error(
                &EdgeError::Image(refused.into()),
                Some(&version),
                false,
            );
        }
        // A description may decode (a ThumbHash, `trim=border`): it takes the slot
        // every transform takes, so an isolate never holds two sources' pixels.
        let started = now_ms();
        let _slot = slot::acquire(slot::SLOT_WAIT, self.config.retry_after_secs).await?;
        timing.add("slot", now_ms() - started);
        let started = now_ms();
        let object = bucket
            .get(self.key.as_str())
            .only_if(Conditional {
                etag_matches: Some(version.trim_matches('"').to_owned()),
                ..Conditional::default()
            })
            .execute()
            .await
            .map_err(super::assets::r2_failed)?;
        let Some(body) = object.as_ref().and_then(|o| o.body()) else {
            return Err(EdgeError::NotReady {
                what: "the source image is being replaced",
                retry_after_secs: 1,
            });
        };
        let original = body.bytes().await.map_err(runtime)?;
        drop(object);
        timing.add("source", now_ms() - started);
        memory::reset_peak();
        let started = now_ms();
        let description = match describe(&original, &self.options, limits, &now_ms) {
            Ok(description) => description,
            Err(e) => return super::images::refusal(e, &version),
        };
        timing.add("describe", now_ms() - started);
        let body = serde_json::to_vec(&description)
            .map_err(|e| EdgeError::Image(crate::image::TransformError::Internal(e.to_string())))?;
        let headers = Headers::new();
        let set = |n: &str, v: &str| headers.set(n, v).map_err(runtime);
        set("content-type", "application/json")?;
        set("content-length", &body.len().to_string())?;
        set(SOURCE_VERSION, &version)?;
        set("x-edge-memory-peak", &memory::peak().to_string())?;
        Ok(Response::from_bytes(body)
            .map_err(runtime)?
            .with_headers(headers))
    }
}
