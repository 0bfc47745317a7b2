//! How long checking and normalizing a caller's phone number takes, alone and with two threads at once (as the
//! server's two Tokio workers do).
//!
//! `cargo bench --bench phones` checks 300,000 numbers of North American shape (area code and exchange from
//! 200 to 899, about half of them valid) once to build the patterns' matching states, then times them again, and
//! then the valid ones alone. Under `cargo test` it checks a few thousand, as a test that they are read as the
//! service reads them.

use std::time::Instant;

use customer_context::domain::contact::{normalize_phone, parse_region};

fn main() {
    let benchmark = std::env::args().any(|arg| arg == "--bench");
    let count = if benchmark { 300_000 } else { 3_000 };
    let us = parse_region("US").expect("US is a region");
    let numbers = numbers(count);
    let valid: Vec<String> = numbers
        .iter()
        .filter(|number| match normalize_phone(number, us) {
            Ok(normalized) => {
                assert_eq!(&normalized, *number, "a number in E.164 is kept as it is");
                true
            }
            Err(_) => false,
        })
        .cloned()
        .collect();
    let share = valid.len() as f64 / numbers.len() as f64;
    assert!((0.3..0.8).contains(&share), "{share} of the numbers valid");
    if !benchmark {
        return;
    }
    println!("{} numbers, {} of them valid", numbers.len(), valid.len());
    for threads in [1, 2] {
        for (what, numbers) in [("all", &numbers), ("valid", &valid)] {
            let started = Instant::now();
            std::thread::scope(|scope| {
                for first in 0..threads {
                    scope.spawn(move || {
                        for number in numbers.iter().skip(first).step_by(threads) {
                            let _ = std::hint::black_box(normalize_phone(number, us));
                        }
                    });
                }
            });
            let per_number = started.elapsed().as_secs_f64() * 1e6 * threads as f64;
            println!(
                "{threads} thread(s), {what:>5}: {:.1} µs of thread time per number",
                per_number / numbers.len() as f64
            );
        }
    }
}

/// `count` numbers `+1 AAA EEE NNNN`, spread over the plan by a fixed pseudo-random sequence.
fn numbers(count: usize) -> Vec<String> {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    (0..count)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let draw = state >> 24;
            let area = 200 + draw % 700;
            let exchange = 200 + (draw / 700) % 700;
            let line = (draw / 490_000) % 10_000;
            format!("+1{area}{exchange}{line:04}")
        })
        .collect()
}
