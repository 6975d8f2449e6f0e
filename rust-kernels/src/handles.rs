//! Rust-owned objects that TS refers to by a numeric handle. A stale or made-up handle is an error, never a
//! dangling pointer: the registry owns the objects and hands out shared references for one call.

use crate::error::{KResult, KernelError};
use crate::nf4::Nf4Weight;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

struct Registry {
    next: u32,
    weights: HashMap<u32, Arc<Nf4Weight>>,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

fn with_registry<T>(f: impl FnOnce(&mut Registry) -> T) -> T {
    let mut slot = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    let registry = slot.get_or_insert_with(|| Registry { next: 1, weights: HashMap::new() });
    f(registry)
}

pub fn insert(weight: Nf4Weight) -> u32 {
    with_registry(|r| {
        let id = r.next;
        r.next = r.next.checked_add(1).unwrap_or(1);
        r.weights.insert(id, Arc::new(weight));
        id
    })
}

pub fn get(handle: u32) -> KResult<Arc<Nf4Weight>> {
    with_registry(|r| r.weights.get(&handle).cloned()).ok_or_else(|| KernelError::unknown_handle(handle))
}

/// Frees the weight (a call still using it keeps it alive until it returns).
pub fn remove(handle: u32) -> KResult<()> {
    with_registry(|r| r.weights.remove(&handle))
        .map(|_| ())
        .ok_or_else(|| KernelError::unknown_handle(handle))
}

pub fn live_count() -> usize {
    with_registry(|r| r.weights.len())
}
