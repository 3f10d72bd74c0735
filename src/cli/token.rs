//! `tokenbridge token status`: where the upstream token comes from and when
//! it expires (never the token itself).

use crate::config::Config;
use crate::pipeline;

/// Prints the cached token's source, age and expiry.
pub(super) fn status(c: &Config) -> anyhow::Result<i32> {
    use crate::timestamp::format_rfc3339_ms;
    let Some(tm) = pipeline::token_manager(c) else {
        println!(
            "auth mode: {}",
            if c.auth == crate::config::AuthConfig::None {
                "none"
            } else {
                "basic"
            }
        );
        println!("no token is used");
        return Ok(0);
    };
    println!("source:   {}", tm.source());
    let cache = c.state.dir.join(pipeline::TOKEN_CACHE_FILE);
    println!("cache:    {}", cache.display());
    match tm.status() {
        Some((obtained, expires)) => {
            let now = crate::ops::logging::unix_ms();
            println!(
                "obtained: {} ({} s ago)",
                format_rfc3339_ms(obtained),
                (now - obtained) / 1000
            );
            if expires > now {
                println!(
                    "expires:  {} (in {} s)",
                    format_rfc3339_ms(expires),
                    (expires - now) / 1000
                );
            } else {
                println!(
                    "expired:  {} ({} s ago)",
                    format_rfc3339_ms(expires),
                    (now - expires) / 1000
                );
            }
        }
        None => println!("no valid cached token"),
    }
    Ok(0)
}
