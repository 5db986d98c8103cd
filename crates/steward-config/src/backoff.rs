//! Restart and retry delays (`backoff`) and crash-loop detection (`crash_loop`): the one
//! backoff formula of steward, used by services, queue retries and the gateway's rounds.

use crate::context::Ctx;
use crate::{ConfigError, HumanDuration};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawBackoff {
    pub initial: Option<HumanDuration>,
    pub max: Option<HumanDuration>,
    pub jitter: Option<f64>,
    pub reset_after: Option<HumanDuration>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCrashLoop {
    pub exits: Option<u32>,
    pub window: Option<HumanDuration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Backoff {
    pub initial: HumanDuration,
    pub max: HumanDuration,
    /// Fraction of each delay that is randomised, 0 to 1.
    pub jitter: f64,
    /// A run at least this long counts as healthy and resets the backoff.
    pub reset_after: HumanDuration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CrashLoop {
    /// More than this many exits within `window` is a crash loop.
    pub exits: u32,
    pub window: HumanDuration,
}

impl Backoff {
    /// The delay before retry `n` (0-based): `initial * 2^n`, capped at `max`, less up to
    /// `jitter` of it at random (`random` in 0..1), so it never exceeds `max`.
    pub fn delay(&self, n: u32, random: f64) -> std::time::Duration {
        let base = self
            .initial
            .0
            .saturating_mul(2u32.saturating_pow(n.min(31)))
            .min(self.max.0);
        base.mul_f64(1.0 - self.jitter.clamp(0.0, 1.0) * random.clamp(0.0, 1.0))
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: HumanDuration::secs(1),
            max: HumanDuration::secs(60),
            jitter: 0.2,
            reset_after: HumanDuration::secs(30),
        }
    }
}

impl Default for CrashLoop {
    fn default() -> Self {
        CrashLoop {
            exits: 5,
            window: HumanDuration::secs(60),
        }
    }
}

/// `backoff = { … }` at `at` (e.g. `services.web`), over the defaults.
pub(crate) fn resolve_backoff(
    ctx: &Ctx,
    at: &[&str],
    raw: RawBackoff,
) -> Result<Backoff, ConfigError> {
    let key = |k: &'static str| [at, &["backoff", k]].concat();
    let defaults = Backoff::default();
    let backoff = Backoff {
        initial: raw.initial.unwrap_or(defaults.initial),
        max: raw.max.unwrap_or(defaults.max),
        jitter: raw.jitter.unwrap_or(defaults.jitter),
        reset_after: raw.reset_after.unwrap_or(defaults.reset_after),
    };
    if backoff.initial > backoff.max {
        return Err(ctx.err(
            &key("initial"),
            format!(
                "initial backoff {} is longer than max {}; initial must be <= max",
                backoff.initial, backoff.max
            ),
        ));
    }
    if !(0.0..=1.0).contains(&backoff.jitter) {
        return Err(ctx.err(
            &key("jitter"),
            format!("jitter {} is outside 0..1; it is the fraction of each delay that is random, e.g. 0.2", backoff.jitter),
        ));
    }
    Ok(backoff)
}

/// `crash_loop = { … }` at `at`, over the defaults.
pub(crate) fn resolve_crash_loop(
    ctx: &Ctx,
    at: &[&str],
    raw: RawCrashLoop,
) -> Result<CrashLoop, ConfigError> {
    let key = |k: &'static str| [at, &["crash_loop", k]].concat();
    let defaults = CrashLoop::default();
    let crash_loop = CrashLoop {
        exits: raw.exits.unwrap_or(defaults.exits),
        window: raw.window.unwrap_or(defaults.window),
    };
    if crash_loop.exits == 0 {
        return Err(ctx.err(
            &key("exits"),
            "must be at least 1: a crash loop is more than this many exits within `window`",
        ));
    }
    if crash_loop.window.0.is_zero() {
        return Err(ctx.err(&key("window"), "must be longer than 0s"));
    }
    Ok(crash_loop)
}
