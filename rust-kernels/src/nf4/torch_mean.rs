//! The mean of the block scales exactly as `torch.mean` computes it for a contiguous f32 CPU tensor
//! (what bitsandbytes stores as the double-quantization offset). A correctly rounded mean differs from
//! torch's in the last bit for about half of real tensors, and that bit is stored in the checkpoint.
//!
//! torch sums with a cascade of f32 accumulators over 8-lane vectors (its AVX2 build; 16 lanes with
//! AVX-512), four rows at once for instruction-level parallelism, then divides by n. We reproduce the
//! AVX2, single-thread order on every machine. (Above 32768 blocks torch also splits the sum by its thread
//! count, so bitsandbytes itself is not reproducible across machines there; we keep the serial order.)

const LANES: usize = 8;
const LEVELS: usize = 4;

fn ceil_log2(x: usize) -> usize {
    if x <= 2 {
        1
    } else {
        (usize::BITS - (x - 1).leading_zeros()) as usize
    }
}

fn add_into(acc: &mut [f32], v: &[f32]) {
    for (a, b) in acc.iter_mut().zip(v) {
        *a += *b;
    }
}

/// Sums `size` steps of four rows each, with accumulators that cascade every `2^level_power` steps.
fn multi_row_sum(row: impl Fn(usize, usize) -> Vec<f32>, size: usize, lanes: usize) -> Vec<Vec<f32>> {
    const ROWS: usize = 4;
    let level_power = (ceil_log2(size) / LEVELS).max(4);
    let level_step = 1usize << level_power;
    let level_mask = level_step - 1;
    let mut acc = vec![vec![vec![0.0f32; lanes]; ROWS]; LEVELS];
    let mut i = 0;
    while i + level_step <= size {
        for _ in 0..level_step {
            for k in 0..ROWS {
                add_into(&mut acc[0][k], &row(i, k));
            }
            i += 1;
        }
        for j in 1..LEVELS {
            for k in 0..ROWS {
                let lower = std::mem::replace(&mut acc[j - 1][k], vec![0.0; lanes]);
                add_into(&mut acc[j][k], &lower);
            }
            if i & (level_mask << (j * level_power)) != 0 {
                break;
            }
        }
    }
    while i < size {
        for k in 0..ROWS {
            add_into(&mut acc[0][k], &row(i, k));
        }
        i += 1;
    }
    for j in 1..LEVELS {
        for k in 0..ROWS {
            let upper = acc[j][k].clone();
            add_into(&mut acc[0][k], &upper);
        }
    }
    acc.swap_remove(0)
}

fn row_sum(vecs: &[&[f32]], lanes: usize) -> Vec<f32> {
    let size_ilp = vecs.len() / 4;
    let mut partial = multi_row_sum(|i, k| vecs[4 * i + k].to_vec(), size_ilp, lanes);
    for v in &vecs[size_ilp * 4..] {
        add_into(&mut partial[0], v);
    }
    for k in 1..4 {
        let p = partial[k].clone();
        add_into(&mut partial[0], &p);
    }
    partial.swap_remove(0)
}

/// `torch.sum` of a contiguous f32 vector (one thread, 8 lanes).
pub fn torch_sum(x: &[f32]) -> f32 {
    if x.len() < LANES {
        let singles: Vec<&[f32]> = x.chunks(1).collect();
        return row_sum(&singles, 1)[0];
    }
    let whole = x.len() / LANES * LANES;
    let vecs: Vec<&[f32]> = x[..whole].chunks(LANES).collect();
    let acc = row_sum(&vecs, LANES);
    let mut total = 0.0f32;
    for v in &x[whole..] {
        total += v;
    }
    for v in acc {
        total += v;
    }
    total
}

/// `torch.mean`: the sum above, then one f32 division.
pub fn torch_mean(x: &[f32]) -> f32 {
    torch_sum(x) / x.len() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_sums_are_plain_sums_of_exact_values() {
        assert_eq!(torch_sum(&[1.0, 2.0, 3.0]), 6.0);
        let v: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        assert_eq!(torch_sum(&v), 499500.0);
        assert_eq!(torch_mean(&[2.0; 37]), 2.0);
    }
}
