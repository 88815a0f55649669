//! Instances on one database agree on the signing key without a restart: the next key is added
//! once however many instances find it due together, and each signs with it from the same moment.

use super::*;

const DAY: Duration = Duration::from_secs(24 * 3600);

async fn maintain(instance: &TestApp) {
    instance
        .state
        .signing_keys
        .maintain(instance.clock_now())
        .await
        .unwrap();
}

async fn published(instance: &TestApp) -> serde_json::Value {
    body(instance.get("/.well-known/jwks.json", None).await).await["keys"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_add_the_next_key_once_and_switch_to_it_together() {
    let (a, b) = two_instances().await;
    a.create_user("ann@example.com", 1, "member").await;
    let first = kid_of(&a.login_ok("ann@example.com", PASSWORD).await.token);
    for instance in [&a, &b] {
        instance.advance(29 * DAY);
    }
    // Both find the rotation due at the same moment: one key is added between them.
    tokio::join!(maintain(&a), maintain(&b));
    for instance in [&a, &b] {
        maintain(instance).await;
        assert_eq!(published(instance).await.as_array().unwrap().len(), 2);
    }
    assert_eq!(published(&a).await, published(&b).await);

    for instance in [&a, &b] {
        instance.advance(DAY - Duration::from_secs(60));
    }
    let before = b.login_ok("ann@example.com", PASSWORD).await.token;
    assert_eq!(kid_of(&before), first);
    for instance in [&a, &b] {
        instance.advance(Duration::from_secs(120));
    }
    let through_a = a.login_ok("ann@example.com", PASSWORD).await.token;
    let through_b = b.login_ok("ann@example.com", PASSWORD).await.token;
    assert_ne!(kid_of(&through_a), first);
    assert_eq!(
        kid_of(&through_a),
        kid_of(&through_b),
        "one signing key for all"
    );
    for token in [&before, &through_a, &through_b] {
        for instance in [&a, &b] {
            assert_eq!(instance.me(token).await.status(), StatusCode::OK);
        }
    }
}
