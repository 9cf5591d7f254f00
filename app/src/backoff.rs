//! Reconnection delays: exponential, capped, with jitter so a fleet of viewers that lost
//! the same server does not come back in one synchronized wave.

/// First retry waits about this long.
pub const BASE_DELAY_MS: u32 = 500;
/// No retry waits longer than this.
pub const MAX_DELAY_MS: u32 = 10_000;

/// The delay before reconnection attempt `attempt` (1-based). `jitter` is a uniform
/// random number in `[0, 1)`: the delay lies between half and all of the exponential
/// step ("equal jitter"), so it always grows but never lines up across clients.
pub fn delay_ms(attempt: u32, jitter: f64) -> u32 {
    let exponent = attempt.saturating_sub(1).min(16);
    let step = BASE_DELAY_MS.saturating_mul(1 << exponent).min(MAX_DELAY_MS);
    let half = step / 2;
    half + (f64::from(half) * jitter.clamp(0.0, 1.0)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_from_the_base() {
        assert_eq!(delay_ms(1, 1.0), BASE_DELAY_MS);
        assert_eq!(delay_ms(2, 1.0), 2 * BASE_DELAY_MS);
        assert_eq!(delay_ms(3, 1.0), 4 * BASE_DELAY_MS);
    }

    #[test]
    fn is_capped() {
        assert_eq!(delay_ms(30, 1.0), MAX_DELAY_MS);
        assert_eq!(
            delay_ms(u32::MAX, 0.999),
            MAX_DELAY_MS / 2 + (f64::from(MAX_DELAY_MS / 2) * 0.999) as u32
        );
    }

    #[test]
    fn jitter_spreads_between_half_and_whole_step() {
        // Attempt 4's step is 8 × the base: delays fall between 4 × and 8 ×.
        assert_eq!(delay_ms(4, 0.0), 4 * BASE_DELAY_MS);
        assert_eq!(delay_ms(4, 0.5), 6 * BASE_DELAY_MS);
        // Out-of-range jitter cannot push a delay outside its band.
        assert_eq!(delay_ms(4, -3.0), 4 * BASE_DELAY_MS);
        assert_eq!(delay_ms(4, 7.0), 8 * BASE_DELAY_MS);
    }
}
