//! `/img/…,format=json/<key>`: the description of a derivative (`image::describe`),
//! through the edge cache like the derivative itself, keyed apart from it and bound to
//! the source's ETag the same way (a stored answer is revalidated by one R2 `head`).

use worker::{Env, Headers, Response};

use super::cache::{SOURCE_VERSION, Source};
use super::images::Headed;
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
        let version =
            match super::images::head_source(&bucket, &self.key, stored, &self.config, timing)
                .await?
            {
                Headed::Answer(answer) => return Ok(answer),
                Headed::Source { version, .. } => version,
            };
        let limits = &self.config.image_limits;
        // A description may decode (a ThumbHash, `trim=border`): it takes the slot
        // every transform takes, so an isolate never holds two sources' pixels.
        let started = now_ms();
        let _slot = slot::acquire(slot::SLOT_WAIT, self.config.retry_after_secs).await?;
        timing.add("slot", now_ms() - started);
        let Some(original) =
            super::images::read_exact(&bucket, &self.key, &version, timing).await?
        else {
            return Err(EdgeError::NotReady {
                what: "the source image is being replaced",
                retry_after_secs: 1,
            });
        };
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
