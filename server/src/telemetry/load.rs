//! This process's share of its machine, read once a second by the sampler: CPU from
//! `/proc/self/stat`, resident memory from `/proc/self/statm` against `/proc/meminfo`
//! (Linux; elsewhere both read as zero). The autoscaler compares them with seed 001's
//! thresholds.

use std::time::Instant;

use wire::ProcessLoad;

/// The CPU time at the last reading, for the rate since.
#[derive(Debug, Default)]
pub struct LoadMeter {
    before: Option<(Instant, f64)>,
}

impl LoadMeter {
    /// The load since the last reading (the first reading's CPU is zero).
    pub fn read(&mut self) -> ProcessLoad {
        let now = Instant::now();
        let cpu_now = cpu_seconds();
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        let cpu = match (self.before, cpu_now) {
            (Some((at, before)), Some(used)) => {
                let elapsed = now.duration_since(at).as_secs_f64().max(0.001);
                ((used - before) / elapsed / cores * 100.0).clamp(0.0, 100.0)
            }
            _ => 0.0,
        };
        if let Some(used) = cpu_now {
            self.before = Some((now, used));
        }
        ProcessLoad {
            cpu,
            memory: memory_percent().unwrap_or(0.0),
        }
    }
}

/// This process's CPU time so far, in seconds (clock ticks of 1/100 s).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command may hold spaces: the fields after it start past the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / 100.0)
}

/// This process's resident memory as a percent of the machine's.
fn memory_percent() -> Option<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let resident_pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let total_kb: f64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(resident_pages * 4.0 / total_kb * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_second_reads_as_cpu_and_the_memory_is_some() {
        let mut meter = LoadMeter::default();
        assert_eq!(meter.read().cpu, 0.0, "nothing to compare the first reading with");
        let until = Instant::now() + std::time::Duration::from_millis(300);
        let mut spin = 0u64;
        while Instant::now() < until {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        let load = meter.read();
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        // One core spun for the whole span (less what the scheduler took away).
        assert!(load.cpu > 50.0 / cores && load.cpu <= 100.0, "{load:?}");
        assert!(load.memory > 0.0 && load.memory < 100.0, "{load:?}");
    }
}
