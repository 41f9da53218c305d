//! The Workers runtime glue (wasm32 only): one `#[event(fetch)]` entry that reads the
//! config, parses the route, dispatches to a plain function, and turns every outcome —
//! success or [`EdgeError`] — into a response carrying `x-edge-cache` and
//! `Server-Timing`. No decision logic lives here; it lives in the pure modules.

mod assets;
mod cache;
mod canary;
mod derived;
mod described;
mod images;
mod jobs;
mod libc;
mod memory;
mod origin;
mod purge;
mod remote;
mod respond;
mod slot;
mod sweep;
mod upload;
mod working;

use protocol::EdgeCacheStatus;
use worker::{Context, Env, Method as HttpMethod, Request, Response, Result, event};

use crate::config::Config;
use crate::error::EdgeError;
use crate::route::{Method, Route};
use crate::timing::ServerTiming;

/// What a handler hands back: the response plus what the cache did.
pub(crate) struct Served {
    pub response: Response,
    pub cache: EdgeCacheStatus,
}

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    let started = now_ms();
    let mut timing = ServerTiming::new();
    let mut trace = Trace::default();
    let outcome = handle(&req, &env, &ctx, &mut timing, &mut trace).await;
    let served = match outcome {
        Ok(served) => served,
        Err(err) => {
            log_error(&req, &err);
            Served {
                response: respond::error(&err)?,
                cache: EdgeCacheStatus::Bypass,
            }
        }
    };
    let edge_ms = now_ms() - started;
    timing.add("edge", edge_ms);
    let arm = trace.arm.map(|(arm, _)| arm);
    let response = respond::finish(served, &timing, arm)?;
    record_outcome(&env, &trace, response.status_code(), edge_ms);
    Ok(response)
}

/// What a request did, beyond its response: what was served and from which origin arm.
#[derive(Default)]
pub(crate) struct Trace {
    /// The route's kind (a content class name, `image`, …); `none` before routing.
    served: Option<&'static str>,
    /// The origin arm, for origin classes.
    arm: Option<(crate::canary::Arm, crate::canary::Why)>,
}

/// Writes the answer's outcome to Analytics Engine under this version's id (the data
/// the rollout's error rate is read from; `protocol::outcomes`). Without the bindings
/// (a deployment that did not add them) nothing is written. Never awaited, never fails
/// the request.
fn record_outcome(env: &Env, trace: &Trace, status: u16, edge_ms: f64) {
    use protocol::outcomes;
    let (Ok(dataset), Ok(version)) = (
        env.analytics_engine(outcomes::BINDING),
        env.get_binding::<worker::WorkerVersionMetadata>(outcomes::VERSION_BINDING),
    ) else {
        if !OUTCOMES_OFF_LOGGED.replace(true) {
            worker::console_warn!(
                "outcome data points are off: bind the {} dataset and {} (wrangler.toml) for scripts/rollout",
                outcomes::BINDING,
                outcomes::VERSION_BINDING
            );
        }
        return;
    };
    let point = outcomes::data_point(
        &version.id(),
        trace.served.unwrap_or("none"),
        trace.arm.map_or("", |(arm, _)| arm.as_str()),
        status,
        edge_ms,
    );
    let [v, served, outcome, arm] = point.blobs;
    let written = worker::AnalyticsEngineDataPointBuilder::new()
        .indexes([point.index.as_str()])
        .blobs([v, served, outcome, arm])
        .doubles(point.doubles)
        .write_to(&dataset);
    if let Err(e) = written {
        worker::console_warn!("writing the outcome data point failed: {e}");
    }
}

async fn handle(
    req: &Request,
    env: &Env,
    ctx: &Context,
    timing: &mut ServerTiming,
    trace: &mut Trace,
) -> std::result::Result<Served, EdgeError> {
    let config = config_of(env)?;
    purge::enter(env, &config);
    assets::enter(&config);
    let url = req.url().map_err(|_| EdgeError::NoRoute {
        path: String::from("(unparsable url)"),
    })?;
    if config.is_internal(url.path()) {
        // The origin's operational endpoints are not for the internet.
        return Err(EdgeError::NoRoute {
            path: url.path().to_owned(),
        });
    }
    Route::check_query(url.query())?;
    let route = Route::parse(Method::parse(req.method().as_ref()), url.path())?;
    trace.served = Some(route.kind());
    match &route {
        Route::Health => {
            let path = route.origin_path().unwrap_or("/healthz");
            let headers = origin::forward_headers(req, |name, listed| {
                crate::policy::forward::forwarded(
                    crate::policy::Audience::Shared,
                    false,
                    name,
                    listed,
                )
            })?;
            let response = origin::fetch(
                &config,
                crate::canary::Ticket::STABLE,
                HttpMethod::Get,
                path,
                headers,
                None,
                timing,
            )
            .await?;
            Ok(Served {
                response,
                cache: EdgeCacheStatus::Bypass,
            })
        }
        Route::Origin { class } => {
            origin::serve(req, ctx, &config, *class, timing, &mut trace.arm).await
        }
        Route::Object {
            class,
            key,
            uploaded,
        } => assets::serve(req, env, ctx, &config, *class, key, *uploaded, timing).await,
        Route::Image { options, key } => {
            images::serve(req, env, ctx, &config, options, key, timing).await
        }
        Route::RemoteImage { options, url } => {
            remote::serve(req, ctx, &config, options, url, timing).await
        }
        Route::Upload { key } => {
            // Another handle on the same JS request, not `clone()`: that tees the body,
            // and the unread branch would buffer the whole upload.
            let mut req = Request::from(Clone::clone(req.inner()));
            let response = upload::route(&mut req, env, &config, key, timing).await?;
            Ok(Served {
                response,
                cache: EdgeCacheStatus::Bypass,
            })
        }
        Route::Fault => {
            use crate::fault::{self, Refused};
            let authorization = req.headers().get("authorization").ok().flatten();
            let authorized = crate::policy::purge::bearer_matches(
                authorization.as_deref(),
                config.purge_secret.as_deref(),
            );
            let r2 = fault::decide(config.fault_injection, authorized, url.query()).map_err(
                |refused| match refused {
                    Refused::Off => EdgeError::NoRoute {
                        path: url.path().to_owned(),
                    },
                    Refused::Unauthorized => EdgeError::Unauthorized {
                        why: "send Authorization: Bearer <EDGE_PURGE_SECRET>",
                    },
                    Refused::BadSwitch(message) => EdgeError::BadFaultSwitch { message },
                },
            )?;
            assets::switch_r2(r2);
            worker::console_warn!("fault injection: R2 reads are {}", r2.as_str());
            let response = Response::from_json(&serde_json::json!({ "r2": r2.as_str() }))
                .map_err(|e| EdgeError::Runtime(e.to_string()))?;
            Ok(Served {
                response,
                cache: EdgeCacheStatus::Bypass,
            })
        }
        Route::Purge => {
            let mut req = Request::from(Clone::clone(req.inner()));
            let response = purge::route(&mut req, env, ctx, &config).await?;
            Ok(Served {
                response,
                cache: EdgeCacheStatus::Bypass,
            })
        }
    }
}

fn log_error(req: &Request, err: &EdgeError) {
    use crate::error::Fault;
    let path = req.path();
    match err.fault() {
        Fault::Client => worker::console_log!("client error {} on {path}: {err}", err.status()),
        Fault::Upstream | Fault::Internal => {
            worker::console_error!("{:?} error {} on {path}: {err}", err.fault(), err.status())
        }
    }
}

thread_local! {
    /// Whether this isolate has said that its outcome bindings are missing.
    static OUTCOMES_OFF_LOGGED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// The config, parsed once per isolate: vars and secrets are fixed for its life.
    static CONFIG: std::cell::RefCell<Option<Config>> = const { std::cell::RefCell::new(None) };
}

/// The isolate's config (an invalid one is parsed, and refused, on every request, so
/// the error keeps reaching the log).
fn config_of(env: &Env) -> std::result::Result<Config, EdgeError> {
    if let Some(config) = CONFIG.with(|c| c.borrow().clone()) {
        return Ok(config);
    }
    let config = Config::from_lookup(|name| env.var(name).ok().map(|v| v.to_string()))?;
    CONFIG.with(|c| *c.borrow_mut() = Some(config.clone()));
    Ok(config)
}

/// The client's request as the cache core reads it.
pub(crate) fn ask_of(req: &Request) -> crate::policy::flow::Ask {
    let header = |name: &str| req.headers().get(name).ok().flatten();
    crate::policy::flow::Ask {
        method: Method::parse(req.method().as_ref()),
        if_none_match: header("if-none-match"),
        if_modified_since: header("if-modified-since"),
        range: header("range").and_then(|r| crate::assets::ByteRange::parse(&r)),
        if_range: header("if-range"),
        authorization: req.headers().has("authorization").unwrap_or(false),
    }
}

/// Milliseconds since the epoch with sub-millisecond precision where the runtime gives it.
pub(crate) fn now_ms() -> f64 {
    worker::js_sys::Date::now()
}
