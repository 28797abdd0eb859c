//! When a node certificate should be renewed.
//!
//! SwarmKit renews at a random point between 50 % and 80 % of the certificate's lifetime
//! (`CertLowerRotationRange`, `CertUpperRotationRange` in `ca/certificates.go`), so that a
//! thousand nodes that joined together do not all ask the CA in the same minute, and a node
//! that misses its first chance still has 20 % of the lifetime to retry. We keep that policy,
//! with the clock and the random draw passed in so it can be tested without waiting.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::identity::parse_cert;

/// The window in which a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertValidity {
    /// First instant the certificate is valid (issuance minus the backdate).
    pub not_before: SystemTime,
    /// Last instant the certificate is valid.
    pub not_after: SystemTime,
}

impl CertValidity {
    /// Reads the validity window of a DER certificate.
    pub fn from_cert_der(cert_der: &[u8]) -> Result<Self, RenewalError> {
        let cert = parse_cert(cert_der).map_err(|e| RenewalError::BadCertificate {
            reason: e.to_string(),
        })?;
        let validity = cert.validity();
        Ok(CertValidity {
            not_before: unix_to_system_time(validity.not_before.timestamp()),
            not_after: unix_to_system_time(validity.not_after.timestamp()),
        })
    }

    /// Total lifetime; zero for a malformed window that ends before it starts.
    pub fn lifetime(&self) -> Duration {
        self.not_after
            .duration_since(self.not_before)
            .unwrap_or(Duration::ZERO)
    }

    /// Time left at `now`; zero once expired.
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.not_after.duration_since(now).unwrap_or(Duration::ZERO)
    }

    /// Whether the certificate is past its end at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        now > self.not_after
    }

    /// Whether the certificate is not valid yet at `now` (a clock behind the CA's).
    pub fn is_not_yet_valid(&self, now: SystemTime) -> bool {
        now < self.not_before
    }
}

/// Converts a Unix timestamp (seconds, possibly before 1970) to a `SystemTime`.
fn unix_to_system_time(secs: i64) -> SystemTime {
    let magnitude = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

/// The renewal window, as fractions of a certificate's lifetime measured from `not_before`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RenewalPolicy {
    /// Renewal is due once this much of the lifetime has passed (SwarmKit: 0.5).
    pub earliest: f64,
    /// The scheduled renewal is never later than this fraction (SwarmKit: 0.8).
    pub latest: f64,
}

impl RenewalPolicy {
    /// SwarmKit's policy: renew somewhere between half and four fifths of the lifetime.
    pub const SWARMKIT: RenewalPolicy = RenewalPolicy {
        earliest: 0.5,
        latest: 0.8,
    };

    /// Whether a certificate with `validity` should be renewed at `now`: true once less than
    /// `1 - earliest` of its lifetime is left (less than half, by default), and when expired.
    pub fn needs_renewal(&self, validity: &CertValidity, now: SystemTime) -> bool {
        now >= self.fraction_point(validity, self.earliest)
    }

    /// When to renew, for a daemon that schedules one timer per certificate: a point between
    /// `earliest` and `latest` of the lifetime chosen by `jitter` in `[0, 1]` (the caller
    /// draws it at random, so that nodes spread their renewals out).
    pub fn renew_at(&self, validity: &CertValidity, jitter: f64) -> SystemTime {
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let fraction = self.earliest + (self.latest - self.earliest) * jitter;
        self.fraction_point(validity, fraction)
    }

    fn fraction_point(&self, validity: &CertValidity, fraction: f64) -> SystemTime {
        let fraction = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.5
        };
        validity.not_before + validity.lifetime().mul_f64(fraction)
    }
}

impl Default for RenewalPolicy {
    fn default() -> Self {
        RenewalPolicy::SWARMKIT
    }
}

/// Whether the certificate `cert_der` should be renewed at `now`, with SwarmKit's policy.
pub fn needs_renewal(cert_der: &[u8], now: SystemTime) -> Result<bool, RenewalError> {
    let validity = CertValidity::from_cert_der(cert_der)?;
    Ok(RenewalPolicy::SWARMKIT.needs_renewal(&validity, now))
}

/// A certificate whose validity could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RenewalError {
    /// The bytes are not an X.509 certificate.
    #[error("cannot read the certificate's validity: {reason}")]
    BadCertificate {
        /// What the parser said.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    /// A fixed instant, far from the real clock on purpose: 2030-01-01T00:00:00Z.
    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_893_456_000)
    }

    fn ninety_days_from_t0() -> CertValidity {
        CertValidity {
            not_before: t0(),
            not_after: t0() + 90 * DAY,
        }
    }

    #[test]
    fn no_renewal_while_more_than_half_is_left() {
        let v = ninety_days_from_t0();
        let policy = RenewalPolicy::SWARMKIT;
        assert!(!policy.needs_renewal(&v, t0()));
        assert!(!policy.needs_renewal(&v, t0() + 44 * DAY));
        assert!(!policy.needs_renewal(&v, t0() + 45 * DAY - Duration::from_secs(1)));
    }

    #[test]
    fn renewal_due_from_half_and_when_expired() {
        let v = ninety_days_from_t0();
        let policy = RenewalPolicy::SWARMKIT;
        assert!(policy.needs_renewal(&v, t0() + 45 * DAY));
        assert!(policy.needs_renewal(&v, t0() + 89 * DAY));
        assert!(policy.needs_renewal(&v, t0() + 400 * DAY));
        assert!(v.is_expired(t0() + 91 * DAY));
        assert_eq!(v.remaining(t0() + 91 * DAY), Duration::ZERO);
        assert_eq!(v.remaining(t0() + 30 * DAY), 60 * DAY);
    }

    #[test]
    fn scheduled_renewal_stays_between_half_and_four_fifths() {
        let v = ninety_days_from_t0();
        let policy = RenewalPolicy::SWARMKIT;
        assert_eq!(policy.renew_at(&v, 0.0), t0() + 45 * DAY);
        assert_eq!(policy.renew_at(&v, 1.0), t0() + 72 * DAY);
        assert_eq!(policy.renew_at(&v, 0.5), t0() + 58 * DAY + DAY / 2);
        // Out-of-range draws are clamped rather than scheduling past the end.
        assert_eq!(policy.renew_at(&v, 7.0), t0() + 72 * DAY);
        assert_eq!(policy.renew_at(&v, f64::NAN), t0() + 45 * DAY);
    }

    #[test]
    fn a_clock_behind_the_ca_is_noticed() {
        let v = ninety_days_from_t0();
        assert!(v.is_not_yet_valid(t0() - Duration::from_secs(1)));
        assert!(!v.is_not_yet_valid(t0()));
    }

    #[test]
    fn unreadable_certificate_is_an_error() {
        let err = needs_renewal(b"junk", t0()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read the certificate's validity")
        );
    }
}
