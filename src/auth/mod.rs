//! Upstream authentication: the token manager (cache, refresh ahead,
//! single flight, backoff) and the OAuth2 client-credentials source that
//! feeds it. Basic credentials need nothing here (see [`crate::config`]).

pub mod oauth;
pub mod token;
