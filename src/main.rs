//! The `tokenbridge` binary: all behaviour lives in the library.

fn main() {
    std::process::exit(tokenbridge::cli::main());
}
