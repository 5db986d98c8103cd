//! `[gateway]` as the whole file's parser reads it: defaults, overrides, and the refusals.

fn parse(toml: &str) -> Result<steward_config::Config, String> {
    steward_config::parse(toml, std::path::Path::new("/srv/steward.toml"))
        .map_err(|e| e.to_string())
}

#[test]
fn a_service_backend_takes_its_address_from_the_health_check() {
    let c = parse(
        "[services.chat]\ncommand = [\"srv\"]\nhealth = { http = \"http://127.0.0.1:8004/health\" }\n[gateway]\n[[gateway.routes]]\nmodel = \"chat\"\nbackends = [{ service = \"chat\" }]\n",
    )
    .unwrap();
    let b = &c.gateway.unwrap().routes[0].backends[0];
    assert_eq!(b.url, "http://127.0.0.1:8004");
    assert_eq!(b.service.as_deref(), Some("chat"));
}

#[test]
fn service_backends_that_cannot_work_are_refused_with_the_fix() {
    let unknown = parse("[services.chat]\ncommand = [\"srv\"]\n[gateway]\n[[gateway.routes]]\nmodel = \"chat\"\nbackends = [{ service = \"chta\" }]\n").unwrap_err();
    assert!(
        unknown.contains("no such service (services: chat)"),
        "{unknown}"
    );
    let no_address = parse("[services.chat]\ncommand = [\"srv\"]\n[gateway]\n[[gateway.routes]]\nmodel = \"chat\"\nbackends = [{ service = \"chat\" }]\n").unwrap_err();
    assert!(no_address.contains("give the backend url"), "{no_address}");
}

#[test]
fn queue_retries_and_budget_have_defaults_and_route_overrides() {
    let c = parse("[gateway]\nqueue_timeout = \"1s\"\nretries = { rounds = 3 }\n[[gateway.routes]]\nmodel = \"a\"\nbackends = [{ url = \"http://h:1\" }]\n[[gateway.routes]]\nmodel = \"b\"\nmax_queue = 0\nretries = { rounds = 1, backoff = \"1s\" }\nbackends = [{ url = \"http://h:1\" }]\n").unwrap();
    let g = c.gateway.unwrap();
    let (a, b) = (&g.routes[0], &g.routes[1]);
    assert_eq!((a.queue_timeout.0.as_millis(), a.max_queue), (1000, 256));
    assert_eq!(
        (a.retries.rounds, a.retries.backoff.0.as_millis()),
        (3, 100)
    );
    assert_eq!(
        (
            b.max_queue,
            b.retries.rounds,
            b.retries.backoff.0.as_millis()
        ),
        (0, 1, 1000)
    );
    assert_eq!(g.retry_budget.ratio, 0.2);
    let zero = parse("[gateway]\n[[gateway.routes]]\nmodel = \"a\"\nretries = { rounds = 0 }\nbackends = [{ url = \"http://h:1\" }]\n").unwrap_err();
    assert!(zero.contains("rounds = 0"), "{zero}");
    let ratio = parse("[gateway]\nretry_budget = { ratio = -1 }\n").unwrap_err();
    assert!(ratio.contains("fraction"), "{ratio}");
}
