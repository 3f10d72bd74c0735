//! How far the heuristic token estimator is from exact o200k_base BPE on
//! the given text files: `cargo run --release --example estimator_error -- FILE...`.

use tokenbridge::format::estimate::{heuristic, Estimator, EstimatorKind};

fn main() {
    let exact = Estimator::new(EstimatorKind::O200k);
    let (mut sum_exact, mut sum_heur) = (0u64, 0u64);
    for path in std::env::args().skip(1) {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{path}: {e}");
                std::process::exit(2);
            }
        };
        let e = exact.count(&text);
        let h = heuristic(text.as_bytes());
        sum_exact += e;
        sum_heur += h;
        println!(
            "{path}: {} bytes, o200k {e}, heuristic {h} ({:+.1}%)",
            text.len(),
            (h as f64 / e.max(1) as f64 - 1.0) * 100.0
        );
    }
    println!(
        "all: o200k {sum_exact}, heuristic {sum_heur} ({:+.1}%)",
        (sum_heur as f64 / sum_exact.max(1) as f64 - 1.0) * 100.0
    );
}
