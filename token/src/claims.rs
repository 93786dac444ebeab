//! The claims of a user token and the checks on them. They are the same
//! checks at both ends: the auth service refuses to mint what a verifier
//! would refuse, so a token that leaves it can only fail by expiring.

use serde::{Deserialize, Serialize};

use crate::error::TokenError;
use crate::limits::CLOCK_SKEW_LEEWAY_S;

/// What a user token asserts: user `sub` of app `app`, from `iat` until
/// `exp` (seconds since the Unix epoch).
///
/// Unknown fields are ignored rather than refused (no
/// `deny_unknown_fields`): a JWT may carry other registered claims such as
/// `jti` or `iss`, and a newer auth service may add some, without older
/// verifiers breaking. The four fields here are all required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The app the user belongs to; app numbers start at 1.
    pub app: u64,
    /// The user id, as `chat_wire::validate_user_id` accepts it.
    pub sub: String,
    /// Issued at, seconds since the epoch. A revocation ("tokens of this user
    /// issued before now stop working") compares against this.
    pub iat: i64,
    /// Expires at, seconds since the epoch; the token is refused from then on
    /// (plus the leeway).
    pub exp: i64,
}

impl Claims {
    /// Claims for a new token, checked as a verifier would check them.
    pub fn new(app: u64, user: &str, iat: i64, exp: i64) -> Result<Self, TokenError> {
        let claims = Self {
            app,
            sub: user.to_owned(),
            iat,
            exp,
        };
        claims.check()?;
        Ok(claims)
    }

    /// The checks that do not depend on the time: app number, user id, and a
    /// life that ends after it starts.
    pub fn check(&self) -> Result<(), TokenError> {
        if self.app == 0 {
            return Err(TokenError::InvalidClaims("app must be at least 1".into()));
        }
        chat_wire::validate_user_id(&self.sub)
            .map_err(|error| TokenError::InvalidClaims(format!("sub: {error}")))?;
        if self.exp <= self.iat {
            return Err(TokenError::InvalidClaims("exp must be after iat".into()));
        }
        Ok(())
    }

    /// The checks against the verifier's clock, with [`CLOCK_SKEW_LEEWAY_S`]
    /// on both ends. Saturating arithmetic: the claims come from the token,
    /// so `exp` may be `i64::MAX`.
    pub fn check_time(&self, now_s: i64) -> Result<(), TokenError> {
        if self.exp.saturating_add(CLOCK_SKEW_LEEWAY_S) <= now_s {
            return Err(TokenError::Expired);
        }
        if self.iat > now_s.saturating_add(CLOCK_SKEW_LEEWAY_S) {
            return Err(TokenError::NotYetValid);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    #[test]
    fn new_refuses_what_a_verifier_would_refuse() {
        assert!(Claims::new(1, "alice", NOW, NOW + 60).is_ok());
        for (app, user, iat, exp) in [
            (0, "alice", NOW, NOW + 60),
            (1, "", NOW, NOW + 60),
            (1, "a b", NOW, NOW + 60),
            (1, &"a".repeat(129), NOW, NOW + 60),
            (1, "alice", NOW, NOW),
            (1, "alice", NOW, NOW - 1),
        ] {
            assert!(
                matches!(
                    Claims::new(app, user, iat, exp),
                    Err(TokenError::InvalidClaims(_))
                ),
                "{app} {user:?} {iat} {exp}"
            );
        }
    }

    #[test]
    fn time_window_has_the_leeway_at_both_ends() {
        let claims = Claims::new(1, "alice", NOW, NOW + 60).unwrap();
        assert_eq!(claims.check_time(NOW), Ok(()));
        assert_eq!(claims.check_time(NOW + 60), Ok(()));
        assert_eq!(
            claims.check_time(NOW + 60 + CLOCK_SKEW_LEEWAY_S - 1),
            Ok(())
        );
        assert_eq!(
            claims.check_time(NOW + 60 + CLOCK_SKEW_LEEWAY_S),
            Err(TokenError::Expired)
        );
        assert_eq!(claims.check_time(NOW - CLOCK_SKEW_LEEWAY_S), Ok(()));
        assert_eq!(
            claims.check_time(NOW - CLOCK_SKEW_LEEWAY_S - 1),
            Err(TokenError::NotYetValid)
        );
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        let forever = Claims {
            app: 1,
            sub: "alice".into(),
            iat: i64::MIN,
            exp: i64::MAX,
        };
        assert_eq!(forever.check_time(i64::MAX - 1), Ok(()));
        assert_eq!(forever.check_time(i64::MIN), Ok(()));
        // Saturated, `exp + leeway` is i64::MAX, which is not after itself.
        assert_eq!(forever.check_time(i64::MAX), Err(TokenError::Expired));
        let future = Claims {
            iat: i64::MAX,
            ..forever
        };
        assert_eq!(future.check_time(NOW), Err(TokenError::NotYetValid));
    }

    #[test]
    fn extra_claims_are_ignored_and_the_four_are_required() {
        let json = r#"{"app":2,"sub":"bob","iat":1,"exp":2,"jti":"x","iss":"auth"}"#;
        let claims: Claims = serde_json::from_str(json).unwrap();
        assert_eq!((claims.app, claims.sub.as_str()), (2, "bob"));
        for missing in [
            r#"{"sub":"bob","iat":1,"exp":2}"#,
            r#"{"app":2,"iat":1,"exp":2}"#,
            r#"{"app":2,"sub":"bob","exp":2}"#,
            r#"{"app":2,"sub":"bob","iat":1}"#,
        ] {
            assert!(
                serde_json::from_str::<Claims>(missing).is_err(),
                "{missing}"
            );
        }
    }
}
