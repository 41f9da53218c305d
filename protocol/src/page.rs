//! The contract between the origin's HTML and the edge's rewriter: which marks the origin
//! puts into a page and what the edge does with them. The origin renders one page per
//! segment without knowing the visitor; the edge fills the per-user pieces while the
//! page streams, from the verified session claims only.
//!
//! - `data-edge="user-name"`: the element's content becomes the visitor's display name
//!   (escaped text); for anonymous visitors it keeps what the origin wrote.
//! - `data-edge="account"`: for a signed-in visitor the element is replaced by a
//!   sign-out form (a POST with the page's origin check); anonymous visitors keep the
//!   origin's sign-in link.
//! - `data-edge-plan="anon free pro"`: the element stays only for those audiences; the
//!   edge removes it for everyone else (plan-specific calls to action).
//! - `<img src="/media/<key>" width height sizes>`: an original; the edge rewrites it
//!   into `srcset`/`sizes` candidates through the image route.

/// The attribute naming a per-user slot.
pub const SLOT_ATTR: &str = "data-edge";
/// The attribute listing the audiences an element is for (space-separated).
pub const PLAN_ATTR: &str = "data-edge-plan";
/// The slot whose content is the visitor's display name.
pub const USER_NAME: &str = "user-name";
/// The slot holding the sign-in link (replaced by a sign-out form when signed in).
pub const ACCOUNT: &str = "account";
/// Where originals are served from; `<img>`s pointing here are made responsive.
pub const MEDIA_PREFIX: &str = "/media/";
/// The sign-in form and the sign-out action.
pub const SIGN_IN_PATH: &str = "/signin";
pub const SIGN_OUT_PATH: &str = "/signout";
/// The public host the edge answered on, forwarded to the origin (trusted only from the
/// edge) for the origin check of form posts.
pub const FORWARDED_HOST: &str = "x-forwarded-host";
