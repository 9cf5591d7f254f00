//! The frame log: the live stream's frames appended to segment files, in the order they
//! went out (`DATA/history-frames/NNNNNNNNNN.frames`).
//!
//! Why not SQLite, like the rest of the history: the stream is the largest thing this
//! process writes, and SQLite in WAL mode copies every byte three times through the
//! kernel (into the WAL, back out of it, into the database at each checkpoint) plus its
//! own page copies and checksums (BENCHMARKS.md, "Session 7"); appended to a file each
//! byte is copied once. Frames need no index
//! but time, come back in the order they were written, and go a segment at a time, so a
//! log is all they need. Metric samples, which are thinned as they age, stay in SQLite.
//!
//! A record is a 32-byte header — payload length, CRC-32 of the rest, timestamp, first
//! and last seq — and the frame's JSON. A run never appends to a segment an earlier run
//! wrote: it starts a new one. A record cut short by a crash (or damaged by a power cut)
//! fails its length or checksum, and reading that segment stops there.

use std::{
    fs::File,
    io::{BufReader, Read, Write},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use super::Entry;

/// Bytes before a record's JSON.
const HEADER: usize = 32;
/// The largest frame a record may hold; a longer length field means a damaged record.
const MAX_FRAME: usize = 64 * 1024 * 1024;
/// Segment files are named by a number that only grows.
const SUFFIX: &str = ".frames";

/// One segment file, as readers and retention see it.
#[derive(Debug, Clone)]
pub(super) struct Segment {
    number: u64,
    path: PathBuf,
    /// The timestamp of its first frame.
    pub(super) first_ts: i64,
    /// The timestamp of its last frame: known for segments this run wrote and for the
    /// newest one an earlier run left.
    last_ts: Option<i64>,
    pub(super) bytes: u64,
}

/// One frame read back.
pub(super) struct StoredFrame {
    pub(super) ts_ms: i64,
    pub(super) first_seq: u64,
    pub(super) json: String,
}

/// The segments on disk, shared by the writer, readers and retention.
#[derive(Clone)]
pub(super) struct FrameLog {
    dir: PathBuf,
    segments: Arc<Mutex<Vec<Segment>>>,
    /// A segment is closed and a new one begun past this size, so retention can free
    /// space a segment at a time.
    segment_bytes: u64,
}

impl FrameLog {
    /// Opens `dir` (creating it), listing the segments earlier runs left.
    pub(super) fn open(dir: &Path, segment_bytes: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut numbered = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let number = path
                .file_name()
                .and_then(|name| name.to_str())
                .and_then(|name| name.strip_suffix(SUFFIX))
                .and_then(|number| number.parse::<u64>().ok());
            if let Some(number) = number {
                numbered.push((number, path));
            }
        }
        numbered.sort();
        let mut segments = Vec::with_capacity(numbered.len());
        let count = numbered.len();
        for (index, (number, path)) in numbered.into_iter().enumerate() {
            let bytes = std::fs::metadata(&path)?.len();
            let first = File::open(&path)
                .ok()
                .and_then(|file| read_record(&mut BufReader::new(file)));
            match first {
                Some(Some(frame)) => {
                    let mut segment = Segment {
                        number,
                        path,
                        first_ts: frame.ts_ms,
                        last_ts: None,
                        bytes,
                    };
                    // The newest frame kept is in the last segment: read it once here.
                    if index + 1 == count {
                        let mut last = None;
                        read_segment(&segment, i64::MIN, i64::MAX, |frame| {
                            last = Some(frame.ts_ms);
                            true
                        });
                        segment.last_ts = last;
                    }
                    segments.push(segment);
                }
                // Empty, or damaged from its first record: nothing to read in it.
                _ => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            segments: Arc::new(Mutex::new(segments)),
            segment_bytes,
        })
    }

    fn segments(&self) -> std::sync::MutexGuard<'_, Vec<Segment>> {
        self.segments.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    fn next_number(&self) -> u64 {
        self.segments().last().map_or(1, |segment| segment.number + 1)
    }

    /// Bytes on disk, all segments together.
    pub(super) fn bytes(&self) -> u64 {
        self.segments().iter().map(|segment| segment.bytes).sum()
    }

    /// The oldest and newest timestamps held, if any.
    pub(super) fn range(&self) -> Option<(i64, i64)> {
        let segments = self.segments();
        let first = segments.first()?.first_ts;
        let last = segments.iter().filter_map(|segment| segment.last_ts).max()?;
        Some((first, last))
    }

    /// Frames stamped `from_ms..=to_ms`, in the order they were written. `keep` sees
    /// each in turn and returns false to stop.
    pub(super) fn read(&self, from_ms: i64, to_ms: i64, mut keep: impl FnMut(StoredFrame) -> bool) {
        let segments = self.segments().clone();
        for (index, segment) in segments.iter().enumerate() {
            // A segment holds frames up to where the next one begins.
            let ends_by = segments.get(index + 1).map_or(i64::MAX, |next| next.first_ts);
            if segment.first_ts > to_ms || ends_by < from_ms {
                continue;
            }
            if !read_segment(segment, from_ms, to_ms, &mut keep) {
                return;
            }
        }
    }

    /// Appends frames as they arrive until every sender is gone. Runs on a thread of
    /// its own: the writes are plain blocking file writes, one for everything that
    /// was waiting.
    pub(super) fn write_until_closed(
        &self,
        mut receiver: tokio::sync::mpsc::Receiver<Entry>,
        on_taken: impl Fn(&Entry),
        on_lost: impl Fn(usize),
    ) {
        let mut writer = SegmentWriter::default();
        while let Some(entry) = receiver.blocking_recv() {
            let mut next = Some(entry);
            while let Some(entry) = next {
                on_taken(&entry);
                if writer.file.is_some() && writer.is_full(self, entry.ts_ms) {
                    writer.flush(self, &on_lost);
                    writer.file = None;
                }
                if writer.file.is_none()
                    && let Err(error) = writer.begin(self, entry.ts_ms)
                {
                    tracing::warn!(%error, "could not start a history segment");
                    on_lost(1);
                    next = receiver.try_recv().ok();
                    continue;
                }
                writer.push(&entry);
                if writer.buffer.len() >= super::WRITE_BYTES {
                    writer.flush(self, &on_lost);
                }
                next = receiver.try_recv().ok();
            }
            writer.flush(self, &on_lost);
        }
    }

    /// Deletes whole segments, oldest first, whose frames are all older than
    /// `older_than_ms`, and more while the log is over `max_bytes`; never the newest.
    /// Returns the bytes freed.
    pub(super) fn prune(&self, older_than_ms: i64, max_bytes: u64) -> u64 {
        let mut segments = self.segments();
        let mut total: u64 = segments.iter().map(|segment| segment.bytes).sum();
        let mut freed = 0;
        while segments.len() > 1 {
            // A segment holds frames up to where the next one begins, if no later.
            let ends_by = segments[0].last_ts.unwrap_or(segments[1].first_ts);
            if ends_by >= older_than_ms && total <= max_bytes {
                break;
            }
            let oldest = segments.remove(0);
            if let Err(error) = std::fs::remove_file(&oldest.path) {
                tracing::warn!(%error, path = %oldest.path.display(), "could not delete a history segment");
            }
            total -= oldest.bytes;
            freed += oldest.bytes;
        }
        freed
    }
}

/// A segment spans at most this much time, so that retention by age, which deletes
/// whole segments, keeps at most this much more than it was asked to.
const SEGMENT_SPAN_MS: i64 = 60_000;

/// The segment being appended to, and what waits to be written to it.
#[derive(Default)]
struct SegmentWriter {
    file: Option<File>,
    path: PathBuf,
    first_ts: i64,
    last_ts: Option<i64>,
    bytes: u64,
    buffer: Vec<u8>,
    buffered_frames: usize,
}

impl SegmentWriter {
    fn begin(&mut self, log: &FrameLog, first_ts: i64) -> std::io::Result<()> {
        let number = log.next_number();
        let path = log.dir.join(format!("{number:010}{SUFFIX}"));
        let file = File::options().create_new(true).append(true).open(&path)?;
        log.segments().push(Segment {
            number,
            path: path.clone(),
            first_ts,
            last_ts: None,
            bytes: 0,
        });
        self.file = Some(file);
        self.path = path;
        self.first_ts = first_ts;
        self.last_ts = None;
        self.bytes = 0;
        Ok(())
    }

    /// Whether a frame stamped `ts_ms` belongs in a new segment.
    fn is_full(&self, log: &FrameLog, ts_ms: i64) -> bool {
        let written = self.bytes + self.buffer.len() as u64;
        written >= log.segment_bytes || ts_ms.saturating_sub(self.first_ts) >= SEGMENT_SPAN_MS
    }

    fn push(&mut self, entry: &Entry) {
        encode(entry, &mut self.buffer);
        self.buffered_frames += 1;
        self.last_ts = Some(self.last_ts.map_or(entry.ts_ms, |last| last.max(entry.ts_ms)));
    }

    /// Writes what is buffered and tells readers about it.
    fn flush(&mut self, log: &FrameLog, on_lost: &impl Fn(usize)) {
        if self.buffer.is_empty() {
            return;
        }
        let written = match self.file.as_mut() {
            Some(file) => file.write_all(&self.buffer),
            None => Err(std::io::Error::other("no segment open")),
        };
        match written {
            Ok(()) => {
                self.bytes += self.buffer.len() as u64;
                let mut segments = log.segments();
                if let Some(segment) = segments.last_mut().filter(|segment| segment.path == self.path) {
                    segment.bytes = self.bytes;
                    segment.last_ts = self.last_ts;
                }
            }
            Err(error) => {
                tracing::warn!(%error, lost = self.buffered_frames, "could not write live history");
                on_lost(self.buffered_frames);
                // The next frame starts a new segment after whatever this one holds.
                self.file = None;
            }
        }
        self.buffer.clear();
        self.buffered_frames = 0;
    }
}

fn encode(entry: &Entry, buffer: &mut Vec<u8>) {
    let json = entry.json.as_bytes();
    let mut rest = [0u8; HEADER - 8];
    rest[..8].copy_from_slice(&entry.ts_ms.to_le_bytes());
    rest[8..16].copy_from_slice(&entry.first_seq.to_le_bytes());
    rest[16..].copy_from_slice(&entry.last_seq.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&rest);
    crc.update(json);
    buffer.extend_from_slice(&(json.len() as u32).to_le_bytes());
    buffer.extend_from_slice(&crc.finalize().to_le_bytes());
    buffer.extend_from_slice(&rest);
    buffer.extend_from_slice(json);
}

/// The next record: `None` at a clean end, `Some(None)` at a damaged or cut-short one.
fn read_record(reader: &mut impl Read) -> Option<Option<StoredFrame>> {
    let mut header = [0u8; HEADER];
    match reader.read_exact(&mut header[..1]) {
        Ok(()) => {}
        Err(_) => return None,
    }
    let damaged = Some(None);
    if reader.read_exact(&mut header[1..]).is_err() {
        return damaged;
    }
    let word = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().unwrap_or_default());
    let long = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().unwrap_or_default());
    let length = word(0) as usize;
    let crc = word(4);
    if length > MAX_FRAME {
        return damaged;
    }
    let mut json = vec![0u8; length];
    if reader.read_exact(&mut json).is_err() {
        return damaged;
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[8..]);
    hasher.update(&json);
    if hasher.finalize() != crc {
        return damaged;
    }
    let Ok(json) = String::from_utf8(json) else {
        return damaged;
    };
    Some(Some(StoredFrame {
        ts_ms: long(8) as i64,
        first_seq: long(16),
        json,
    }))
}

/// Hands `keep` the frames of one segment stamped `from_ms..=to_ms`, in order, up to the
/// segment's end or its first damaged record. Returns false when `keep` asked to stop.
fn read_segment(segment: &Segment, from_ms: i64, to_ms: i64, mut keep: impl FnMut(StoredFrame) -> bool) -> bool {
    let Ok(file) = File::open(&segment.path) else {
        // Deleted by retention since the list was taken.
        return true;
    };
    // Only as far as writes have finished: the writer may be appending to this segment
    // right now, and a record half copied into the file would read as damaged.
    let mut reader = BufReader::with_capacity(256 * 1024, file.take(segment.bytes));
    loop {
        match read_record(&mut reader) {
            None => return true,
            Some(None) => {
                tracing::warn!(path = %segment.path.display(), "a history segment ends in a damaged record; read up to it");
                return true;
            }
            Some(Some(frame)) => {
                if (from_ms..=to_ms).contains(&frame.ts_ms) && !keep(frame) {
                    return false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, ts_ms: i64, text: &str) -> Entry {
        Entry {
            first_seq: seq,
            last_seq: seq,
            ts_ms,
            metrics_only: false,
            json: text.to_string().into(),
        }
    }

    fn write(log: &FrameLog, entries: Vec<Entry>) {
        let (sender, receiver) = tokio::sync::mpsc::channel(entries.len().max(1));
        for entry in entries {
            sender.try_send(entry).expect("queued");
        }
        drop(sender);
        log.write_until_closed(receiver, |_| {}, |_| {});
    }

    fn read_all(log: &FrameLog) -> Vec<(u64, String)> {
        let mut frames = Vec::new();
        log.read(i64::MIN, i64::MAX, |frame| {
            frames.push((frame.first_seq, frame.json));
            true
        });
        frames
    }

    /// A log in a new directory holding frames 1 (at 10 ms) and 2 (at 20 ms), and the
    /// path of the segment they are in.
    fn two_frames_written() -> (tempfile::TempDir, FrameLog, PathBuf) {
        let dir = tempfile::tempdir().expect("dir");
        let log = FrameLog::open(dir.path(), 1 << 20).expect("opens");
        write(&log, vec![entry(1, 10, r#"{"seq":1}"#), entry(2, 20, r#"{"seq":2}"#)]);
        let segment = dir.path().join(format!("{:010}{SUFFIX}", 1));
        (dir, log, segment)
    }

    #[test]
    fn a_record_cut_short_ends_its_segment_and_the_next_run_starts_a_new_one() {
        let (dir, _, segment) = two_frames_written();
        // A crash part-way through the second record's write.
        let length = std::fs::metadata(&segment).expect("written").len();
        File::options()
            .write(true)
            .open(&segment)
            .expect("opens")
            .set_len(length - 3)
            .expect("cuts");

        let log = FrameLog::open(dir.path(), 1 << 20).expect("opens again");
        write(&log, vec![entry(3, 30, r#"{"seq":3}"#)]);
        let frames = read_all(&log);
        assert_eq!(
            frames,
            [(1, r#"{"seq":1}"#.to_string()), (3, r#"{"seq":3}"#.to_string())]
        );
        assert_eq!(log.range(), Some((10, 30)));
    }

    #[test]
    fn a_flipped_byte_fails_the_checksum() {
        let (_dir, log, segment) = two_frames_written();
        let mut bytes = std::fs::read(&segment).expect("reads");
        let last = bytes.len() - 2;
        bytes[last] ^= 0x20;
        std::fs::write(&segment, bytes).expect("writes");
        assert_eq!(read_all(&log), [(1, r#"{"seq":1}"#.to_string())]);
    }

    #[test]
    fn pruning_goes_by_whole_segments_oldest_first_and_keeps_the_newest() {
        let dir = tempfile::tempdir().expect("dir");
        // Segments close past 100 bytes: every 2 KB frame is a segment of its own.
        let log = FrameLog::open(dir.path(), 100).expect("opens");
        let frame = |seq: u64| format!(r#"{{"seq":{seq},"pad":"{}"}}"#, "x".repeat(2_000));
        write(
            &log,
            (1..=5).map(|seq| entry(seq, seq as i64 * 1_000, &frame(seq))).collect(),
        );
        assert_eq!(read_all(&log).len(), 5);
        let one = log.bytes() / 5;

        // By age: segments whose frames all precede 3,000 ms.
        assert_eq!(log.prune(3_000, u64::MAX), 2 * one);
        let seqs: Vec<u64> = read_all(&log).into_iter().map(|(seq, _)| seq).collect();
        assert_eq!(seqs, [3, 4, 5]);
        // By size: down to two segments' worth.
        log.prune(i64::MIN, 2 * one);
        let seqs: Vec<u64> = read_all(&log).into_iter().map(|(seq, _)| seq).collect();
        assert_eq!(seqs, [4, 5]);
        // Never the last.
        log.prune(i64::MAX, 0);
        let seqs: Vec<u64> = read_all(&log).into_iter().map(|(seq, _)| seq).collect();
        assert_eq!(seqs, [5]);
    }
}
