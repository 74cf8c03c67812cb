//! snapshot: a small backup tool in the style of rsync/restic, written against Rust's std
//! the way real command-line tools are (std::fs, std::time, std::io::stdin, HashMap).
//!
//! usage: snapshot SOURCE_DIR REPO_DIR [--exit N]  < word text
//!
//! 1. Walks SOURCE_DIR (read_dir, metadata), copies every file into
//!    REPO_DIR/snap-1/ (create_dir_all, fs::copy), and writes an index file
//!    (path, size, FNV-1a hash) with BufWriter, then set_len/sync_all.
//! 2. Changes SOURCE_DIR (appends to one file, renames another, removes one, makes
//!    a nested directory), sleeps, and takes snap-2 incrementally: a file is
//!    copied again only when its modified() time is newer than the snap-1 index
//!    file's (what make and rsync do); the rest are hard-linked from snap-1.
//! 3. Reads stdin line by line and counts words in a HashMap (whose hasher is seeded
//!    from the random source), prints the top words sorted, and writes them to REPO_DIR.
//! 4. Checks the clocks: SystemTime against a new file's modified() time, Instant
//!    across thread::sleep, SystemTime::UNIX_EPOCH arithmetic.
//! 5. Removes snap-1 with remove_dir_all (readdir + unlink while reading), then prints
//!    a sorted listing of REPO_DIR with sizes and content hashes.
//!
//! Output is deterministic for the same inputs except lines that start with "~ ",
//! which carry clock readings and hasher-dependent values.  Failed checks print
//! "FAIL ..." and make the exit status 1; "--exit N" ends with N otherwise.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hash, Hasher};
use std::io::{self, BufRead, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Run {
    failures: u32,
}

impl Run {
    fn check(&mut self, ok: bool, what: &str) {
        println!("check {}: {}", what, if ok { "yes" } else { "no" });
        if !ok {
            self.failures += 1;
        }
    }

    fn fail(&mut self, what: &str, err: io::Error) {
        println!("FAIL {}: {}", what, err.kind_name());
        self.failures += 1;
    }
}

/// io::ErrorKind's name without the OS message (whose wording differs between platforms).
trait KindName {
    fn kind_name(&self) -> String;
}
impl KindName for io::Error {
    fn kind_name(&self) -> String {
        format!("{:?}", self.kind())
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Every file under `root`, as paths relative to it, sorted.
fn walk(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in fs::read_dir(root.join(&rel))? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let r = rel.join(entry.file_name());
            if kind.is_dir() {
                stack.push(r);
            } else {
                out.push(r);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn write_index(path: &Path, src: &Path, files: &[PathBuf]) -> io::Result<u64> {
    let f = File::create(path)?;
    let mut w = BufWriter::new(f);
    let mut total = 0;
    for rel in files {
        let data = fs::read(src.join(rel))?;
        total += data.len() as u64;
        writeln!(w, "{} {} {:016x}", rel.display(), data.len(), fnv1a(&data))?;
    }
    let f = w.into_inner().map_err(|e| e.into_error())?;
    // Pad the index to a multiple of 64 bytes, as a block-aligned format would.
    let len = f.metadata()?.len();
    f.set_len((len + 63) / 64 * 64)?;
    f.sync_all()?;
    Ok(total)
}

fn snapshot_full(run: &mut Run, src: &Path, dst: &Path) -> io::Result<()> {
    fs::create_dir_all(dst)?;
    let files = walk(src)?;
    for rel in &files {
        if let Some(parent) = rel.parent() {
            fs::create_dir_all(dst.join(parent))?;
        }
        let n = fs::copy(src.join(rel), dst.join(rel))?;
        println!("  copy {} ({} bytes)", rel.display(), n);
    }
    let total = write_index(&dst.join("INDEX"), src, &files)?;
    println!("snap-1: {} files, {} bytes", files.len(), total);
    run.check(fs::metadata(dst.join("INDEX"))?.len() % 64 == 0, "index padded with set_len");
    Ok(())
}

fn snapshot_incremental(src: &Path, prev: &Path, dst: &Path) -> io::Result<()> {
    fs::create_dir_all(dst)?;
    let since = fs::metadata(prev.join("INDEX"))?.modified()?;
    let files = walk(src)?;
    let (mut copied, mut linked) = (0, 0);
    for rel in &files {
        if let Some(parent) = rel.parent() {
            fs::create_dir_all(dst.join(parent))?;
        }
        let newer = fs::metadata(src.join(rel))?.modified()? > since;
        if newer || !prev.join(rel).exists() {
            fs::copy(src.join(rel), dst.join(rel))?;
            println!("  copy {} ({})", rel.display(), if newer { "changed" } else { "new path" });
            copied += 1;
        } else {
            fs::hard_link(prev.join(rel), dst.join(rel))?;
            println!("  link {}", rel.display());
            linked += 1;
        }
    }
    let total = write_index(&dst.join("INDEX"), src, &files)?;
    println!("snap-2: {} files ({} copied, {} linked), {} bytes", files.len(), copied, linked, total);
    Ok(())
}

fn change_source(src: &Path) -> io::Result<()> {
    let mut f = OpenOptions::new().append(true).open(src.join("docs/readme.txt"))?;
    f.write_all(b"a line appended after the first snapshot\n")?;
    drop(f);
    fs::rename(src.join("data.csv"), src.join("data-renamed.csv"))?;
    fs::remove_file(src.join("obsolete.txt"))?;
    fs::create_dir_all(src.join("deep/er/still"))?;
    fs::write(src.join("deep/er/still/new.txt"), b"created in a nested directory\n")?;
    println!("changed the source: appended, renamed, removed, created");
    Ok(())
}

fn word_counts(run: &mut Run, repo: &Path) -> io::Result<()> {
    let stdin = io::stdin();
    let mut counts: HashMap<String, u32> = HashMap::new();
    let mut lines = 0;
    for line in stdin.lock().lines() {
        let line = line?;
        lines += 1;
        for w in line.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
            *counts.entry(w.to_lowercase()).or_insert(0) += 1;
        }
    }
    // HashMap's iteration order depends on its random seed: real programs sort.
    println!("~ first key in hash order: {:?}", counts.keys().next());
    let mut top: Vec<(&String, &u32)> = counts.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    println!("stdin: {} lines, {} distinct words", lines, counts.len());
    let mut out = String::new();
    for (w, n) in top.iter().take(8) {
        println!("  {:>4} {}", n, w);
        out.push_str(&format!("{} {}\n", w, n));
    }
    fs::write(repo.join("top-words.txt"), out)?;
    let (a, b) = (RandomState::new(), RandomState::new());
    let mut ha = a.build_hasher();
    let mut hb = b.build_hasher();
    "same key".hash(&mut ha);
    "same key".hash(&mut hb);
    run.check(ha.finish() != hb.finish(), "two RandomStates hash differently (random seeds)");
    Ok(())
}

fn clocks(run: &mut Run, repo: &Path) -> io::Result<()> {
    let before = SystemTime::now();
    fs::write(repo.join("clock-probe"), b"probe")?;
    let mtime = fs::metadata(repo.join("clock-probe"))?.modified()?;
    let after = SystemTime::now();
    let slack = Duration::from_secs(2);
    println!("~ now {:?}, probe modified {:?}", after.duration_since(UNIX_EPOCH).unwrap_or_default(), mtime.duration_since(UNIX_EPOCH).unwrap_or_default());
    run.check(mtime + slack >= before && mtime <= after + slack, "a new file's modified() is the current time");
    run.check(before.duration_since(UNIX_EPOCH).map(|d| d.as_secs() > 1_600_000_000).unwrap_or(false), "SystemTime is after 2020");
    fs::remove_file(repo.join("clock-probe"))?;
    for ms in [1u64, 25, 60] {
        let t0 = Instant::now();
        thread::sleep(Duration::from_millis(ms));
        let dt = t0.elapsed();
        println!("~ sleep {} ms took {:?}", ms, dt);
        run.check(dt >= Duration::from_millis(ms), &format!("thread::sleep({} ms) lasted at least that long", ms));
    }
    Ok(())
}

fn listing(repo: &Path) -> io::Result<()> {
    println!("repository:");
    for rel in walk(repo)? {
        let mut data = Vec::new();
        File::open(repo.join(&rel))?.read_to_end(&mut data)?;
        println!("  {} {} {:016x}", rel.display(), data.len(), fnv1a(&data));
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: snapshot SOURCE_DIR REPO_DIR [--exit N] < text");
        process::exit(2);
    }
    let exit_status: i32 = match args.get(3).map(String::as_str) {
        Some("--exit") => args.get(4).and_then(|s| s.parse().ok()).unwrap_or(0),
        _ => 0,
    };
    let (src, repo) = (Path::new(&args[1]), Path::new(&args[2]));
    let mut run = Run { failures: 0 };
    println!("snapshot for {}", std::env::var("SNAPSHOT_USER").unwrap_or_else(|_| "(nobody)".into()));
    let steps: [(&str, &dyn Fn(&mut Run) -> io::Result<()>); 6] = [
        ("snapshot 1", &|r| snapshot_full(r, src, &repo.join("snap-1"))),
        ("change", &|_| {
            // Let the clock move past the index's modification time first: file systems
            // stamp files from a coarse clock (a few ms per tick on Linux).
            thread::sleep(Duration::from_millis(20));
            change_source(src)
        }),
        ("snapshot 2", &|_| snapshot_incremental(src, &repo.join("snap-1"), &repo.join("snap-2"))),
        ("words", &|r| word_counts(r, repo)),
        ("clocks", &|r| clocks(r, repo)),
        ("prune", &|r| {
            fs::remove_dir_all(repo.join("snap-1"))?;
            r.check(!repo.join("snap-1").exists(), "remove_dir_all removed snap-1");
            listing(repo)
        }),
    ];
    for (name, step) in steps.iter() {
        println!("== {}", name);
        if let Err(e) = step(&mut run) {
            run.fail(name, e);
        }
    }
    println!("{} failures", run.failures);
    process::exit(if run.failures > 0 { 1 } else { exit_status });
}
