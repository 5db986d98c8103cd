//! The order in which a request tries a route's backends: a pure function of what each
//! backend looks like now, so it can be tested without a network.

/// One backend as the balancer sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    /// Up, not ejected, not held off by a 429. Others go last (the caller leaves out the
    /// ones it will not try at all).
    pub routable: bool,
    pub priority: u32,
    pub in_flight: u32,
    pub weight: u32,
}

/// Routable backends first (a down one only as a last resort), then by priority. Within a
/// priority, the least loaded relative to its weight (Envoy's weighted least-request), ties
/// broken at random in proportion to weight, so idle backends share by weight. `rand01`
/// yields numbers in [0, 1).
pub fn order(candidates: &[Candidate], mut rand01: impl FnMut() -> f64) -> Vec<usize> {
    let mut keyed: Vec<(bool, u32, f64, f64, usize)> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let weight = f64::from(c.weight.max(1));
            // Efraimidis–Spirakis: the smallest -ln(u)/w wins with probability w/Σw.
            let race = -(1.0 - rand01()).ln() / weight;
            (
                !c.routable,
                c.priority,
                f64::from(c.in_flight) / weight,
                race,
                i,
            )
        })
        .collect();
    keyed.sort_by(|a, b| {
        (a.0, a.1)
            .cmp(&(b.0, b.1))
            .then(a.2.total_cmp(&b.2))
            .then(a.3.total_cmp(&b.3))
    });
    keyed.into_iter().map(|k| k.4).collect()
}

#[cfg(test)]
mod tests {
    use super::{order, Candidate};

    fn c(routable: bool, priority: u32, in_flight: u32, weight: u32) -> Candidate {
        Candidate {
            routable,
            priority,
            in_flight,
            weight,
        }
    }

    #[test]
    fn priority_first_and_a_down_backend_last() {
        let mut rng = fastrand::Rng::with_seed(7);
        let got = order(
            &[c(false, 1, 0, 1), c(true, 2, 5, 1), c(true, 1, 9, 1)],
            || rng.f64(),
        );
        assert_eq!(got, vec![2, 1, 0]);
    }

    #[test]
    fn within_a_priority_the_least_loaded_for_its_weight_goes_first() {
        let mut rng = fastrand::Rng::with_seed(7);
        // 4 in flight on weight 4 is lighter than 2 on weight 1.
        let got = order(&[c(true, 1, 2, 1), c(true, 1, 4, 4)], || rng.f64());
        assert_eq!(got, vec![1, 0]);
    }

    #[test]
    fn idle_backends_share_by_weight() {
        let mut rng = fastrand::Rng::with_seed(42);
        let n = 20_000;
        let first = (0..n)
            .filter(|_| order(&[c(true, 1, 0, 3), c(true, 1, 0, 1)], || rng.f64())[0] == 0)
            .count();
        let share = first as f64 / f64::from(n);
        assert!((0.73..0.77).contains(&share), "weight 3 of 4 got {share}");
    }
}
