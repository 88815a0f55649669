use super::*;

fn jwt_with_iat(iat: i64) -> String {
    let payload = URL_SAFE_NO_PAD.encode(format!(r#"{{"iat":{iat}}}"#));
    format!("e30.{payload}.sig")
}

const MIN: i64 = 60_000;

#[test]
fn the_lifetime_comes_from_iat_and_exp() {
    let token = jwt_with_iat(1_000);
    let lifetime = Lifetime::of(&token, 1_000_000 + 15 * MIN, 1_000_000);
    assert_eq!(lifetime.length(), 15 * MIN);
    assert_eq!(lifetime.expires, 1_000_000 + 15 * MIN);
}

#[test]
fn a_client_clock_behind_the_server_does_not_stretch_the_lifetime() {
    // Server time 1_000 s, client clock 5 minutes behind.
    let token = jwt_with_iat(1_000);
    let received = 1_000_000 - 5 * MIN;
    let lifetime = Lifetime::of(&token, 1_000_000 + 15 * MIN, received);
    assert_eq!(lifetime.expires, received + 15 * MIN);
    // A client clock ahead of the server's keeps the server's expiry (the earlier one).
    let received = 1_000_000 + 5 * MIN;
    let lifetime = Lifetime::of(&token, 1_000_000 + 15 * MIN, received);
    assert_eq!(lifetime.expires, 1_000_000 + 15 * MIN);
}

#[test]
fn a_token_without_iat_is_timed_from_its_arrival() {
    let lifetime = Lifetime::of("not-a-jwt", 10 * MIN, 4 * MIN);
    assert_eq!(
        lifetime,
        Lifetime {
            issued: 4 * MIN,
            expires: 10 * MIN
        }
    );
}

#[test]
fn renewal_is_due_when_a_third_is_left_minus_jitter() {
    let policy = RenewalPolicy::default();
    let lifetime = Lifetime {
        issued: 0,
        expires: 15 * MIN,
    };
    assert_eq!(policy.renew_at(lifetime, 0.0), 10 * MIN);
    let earliest = policy.renew_at(lifetime, 0.999_999);
    assert!(
        (10 * MIN - 90_000..10 * MIN).contains(&earliest),
        "{earliest}"
    );
    assert_eq!(policy.send_until(lifetime), 15 * MIN - 10_000);
}

#[test]
fn short_tokens_keep_a_tenth_of_their_life_as_margin() {
    let policy = RenewalPolicy::default();
    let lifetime = Lifetime {
        issued: 0,
        expires: 30_000,
    };
    assert_eq!(policy.send_until(lifetime), 27_000);
    assert!(policy.renew_at(lifetime, 0.5) < policy.send_until(lifetime));
}

#[test]
fn retries_back_off_exponentially_up_to_the_cap() {
    let policy = RenewalPolicy::default();
    assert_eq!(policy.retry_delay(1, 1.0), 1_000);
    assert_eq!(policy.retry_delay(1, 0.0), 500);
    assert_eq!(policy.retry_delay(3, 1.0), 4_000);
    assert_eq!(policy.retry_delay(10, 1.0), 30_000);
    assert_eq!(policy.retry_delay(u32::MAX, 1.0), 30_000);
}

#[test]
fn random_units_stay_in_range() {
    for _ in 0..100 {
        let r = random_unit();
        assert!((0.0..1.0).contains(&r));
    }
}
