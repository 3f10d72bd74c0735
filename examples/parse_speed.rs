//! Measures the building blocks of line classification on a corpus folder:
//! `cargo run --release --example parse_speed DIR`.
use std::time::Instant;
fn main() {
    let root = std::env::args().nth(1).expect("DIR");
    let mut files = vec![];
    fn walk(p: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(p).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out)
            } else if p.extension().is_some_and(|x| x == "jsonl") {
                out.push(p)
            }
        }
    }
    walk(std::path::Path::new(&root), &mut files);
    let data: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let total: usize = data.iter().map(|d| d.len()).sum();
    let lines: Vec<&[u8]> = data
        .iter()
        .flat_map(|d| d.split(|b| *b == b'\n'))
        .filter(|l| !l.is_empty())
        .collect();
    let mbps = |t: Instant| total as f64 / 1e6 / t.elapsed().as_secs_f64();
    let ctx = tokenbridge::record::SourceContext::default();
    let t = Instant::now();
    let mut p = tokenbridge::parse::LineParser::new();
    let mut n = 0;
    for l in &lines {
        let mut l = l.to_vec();
        if let tokenbridge::parse::Parsed::Usage(_) = p.classify(&mut l, &ctx, 0) {
            n += 1
        }
    }
    println!("classify (full simd-json): {:.0} MB/s usage={n}", mbps(t));
    let t = Instant::now();
    let ok = lines
        .iter()
        .filter(|l| std::str::from_utf8(l).is_ok())
        .count();
    println!("from_utf8: {:.0} MB/s ok={ok}", mbps(t));
    let t = Instant::now();
    let ok = lines
        .iter()
        .filter(|l| l.iter().all(|b| *b >= 0x20))
        .count();
    println!("no control bytes: {:.0} MB/s ok={ok}", mbps(t));
    let f = memchr::memmem::Finder::new(b"usage");
    let t = Instant::now();
    let has = lines.iter().filter(|l| f.find(l).is_some()).count();
    println!("memmem usage: {:.0} MB/s has={has}", mbps(t));
    let t = Instant::now();
    let mut c = 0usize;
    for l in &lines {
        c += memchr::memchr2_iter(b'"', b'\\', l).count();
    }
    println!("memchr2 quote/backslash: {:.0} MB/s hits={c}", mbps(t));
}
