//! Choosing an app server: round-robin or least-connections over the healthy ones,
//! and sticky assignment for WebSocket users. Pure functions, so the rules are tested
//! without sockets.

use wire::BalancerAlgorithm;

/// What the choice needs to know about one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub index: usize,
    pub healthy: bool,
    pub active_connections: u64,
}

/// Picks a healthy backend not in `exclude`. `cursor` is a counter that increases on
/// every call: round-robin takes turns with it, and least-connections uses it to take
/// turns among the servers tied for fewest connections.
pub fn pick(algorithm: BalancerAlgorithm, candidates: &[Candidate], cursor: usize, exclude: &[usize]) -> Option<usize> {
    let usable: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.healthy && !exclude.contains(&c.index))
        .collect();
    if usable.is_empty() {
        return None;
    }
    match algorithm {
        BalancerAlgorithm::RoundRobin => Some(usable[cursor % usable.len()].index),
        BalancerAlgorithm::LeastConnections => {
            let fewest = usable.iter().map(|c| c.active_connections).min()?;
            let idlest: Vec<usize> = usable
                .iter()
                .filter(|c| c.active_connections == fewest)
                .map(|c| c.index)
                .collect();
            Some(idlest[cursor % idlest.len()])
        }
    }
}

/// A sticky user keeps their server while it is healthy; otherwise they get a new one.
pub fn sticky(assigned: Option<usize>, candidates: &[Candidate], exclude: &[usize]) -> Option<usize> {
    assigned.filter(|index| !exclude.contains(index) && candidates.iter().any(|c| c.index == *index && c.healthy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use BalancerAlgorithm::{LeastConnections, RoundRobin};

    fn backends(active: &[u64]) -> Vec<Candidate> {
        active
            .iter()
            .enumerate()
            .map(|(index, &active_connections)| Candidate {
                index,
                healthy: true,
                active_connections,
            })
            .collect()
    }

    #[test]
    fn round_robin_takes_turns() {
        let all = backends(&[0, 0, 0]);
        let picks: Vec<_> = (0..6)
            .map(|cursor| pick(RoundRobin, &all, cursor, &[]).expect("one"))
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn unhealthy_servers_get_no_new_traffic() {
        let mut all = backends(&[0, 0, 0]);
        all[1].healthy = false;
        let picks: Vec<_> = (0..4)
            .map(|cursor| pick(RoundRobin, &all, cursor, &[]).expect("one"))
            .collect();
        assert_eq!(picks, [0, 2, 0, 2]);
        assert!(!(0..10).any(|cursor| pick(LeastConnections, &all, cursor, &[]) == Some(1)));
    }

    #[test]
    fn least_connections_prefers_the_idlest_and_rotates_ties() {
        let all = backends(&[5, 1, 3]);
        assert_eq!(pick(LeastConnections, &all, 0, &[]), Some(1));
        let tied = backends(&[2, 2, 7]);
        let picks: Vec<_> = (0..4)
            .map(|cursor| pick(LeastConnections, &tied, cursor, &[]).expect("one"))
            .collect();
        assert_eq!(picks, [0, 1, 0, 1]);
    }

    #[test]
    fn nothing_healthy_means_no_pick() {
        let mut all = backends(&[0, 0]);
        all.iter_mut().for_each(|c| c.healthy = false);
        assert_eq!(pick(RoundRobin, &all, 0, &[]), None);
        assert_eq!(
            pick(RoundRobin, &backends(&[0]), 0, &[0]),
            None,
            "excluded after a failed attempt"
        );
    }

    #[test]
    fn sticky_users_stay_until_their_server_is_unhealthy() {
        let mut all = backends(&[0, 0, 0]);
        assert_eq!(sticky(Some(2), &all, &[]), Some(2));
        all[2].healthy = false;
        assert_eq!(sticky(Some(2), &all, &[]), None, "moves when its server is unhealthy");
        assert_eq!(sticky(None, &all, &[]), None);
        assert_eq!(sticky(Some(0), &all, &[0]), None, "moves when its server just refused");
    }
}
