//! The C library symbols libwebp needs on wasm32-unknown-unknown, which has no libc:
//! `malloc`, `calloc`, `free` (on top of Rust's allocator, so C allocations count
//! against the same 128 MiB ceiling and the same high-water mark) and `qsort`/`bsearch`.
//! Written here because no crate provides them for this target; each is small.

// This module is the one place raw C ABI memory handling is unavoidable.
#![allow(unsafe_code)]

use std::alloc::{Layout, alloc, alloc_zeroed, dealloc};
use std::ffi::c_void;

/// Size header in front of every block: 16 bytes keeps the payload 16-aligned.
const HEADER: usize = 16;

fn layout(size: usize) -> Option<Layout> {
    Layout::from_size_align(size.checked_add(HEADER)?, HEADER).ok()
}

unsafe fn finish(base: *mut u8, size: usize) -> *mut c_void {
    if base.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: `base` points to at least HEADER + size bytes, 16-aligned.
    unsafe {
        (base as *mut usize).write(size);
        base.add(HEADER) as *mut c_void
    }
}

/// # Safety
/// C ABI `malloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    match layout(size) {
        // SAFETY: the layout has a non-zero size (HEADER > 0).
        Some(l) => unsafe { finish(alloc(l), size) },
        None => std::ptr::null_mut(),
    }
}

/// # Safety
/// C ABI `calloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn calloc(count: usize, size: usize) -> *mut c_void {
    match count
        .checked_mul(size)
        .and_then(|total| layout(total).map(|l| (l, total)))
    {
        // SAFETY: as in malloc.
        Some((l, total)) => unsafe { finish(alloc_zeroed(l), total) },
        None => std::ptr::null_mut(),
    }
}

/// # Safety
/// C ABI `free`: `ptr` is null or came from `malloc`/`calloc` above.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: the block starts HEADER bytes earlier and records its payload size.
    unsafe {
        let base = (ptr as *mut u8).sub(HEADER);
        let size = (base as *const usize).read();
        if let Some(l) = layout(size) {
            dealloc(base, l);
        }
    }
}

type Compare = unsafe extern "C" fn(*const c_void, *const c_void) -> i32;

/// # Safety
/// C ABI `qsort` (insertion sort: libwebp sorts short arrays).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qsort(base: *mut c_void, count: usize, size: usize, compar: Compare) {
    if size == 0 || count < 2 {
        return;
    }
    let base = base as *mut u8;
    let mut tmp = vec![0u8; size];
    for i in 1..count {
        // SAFETY: every index is within `count` elements of `size` bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(base.add(i * size), tmp.as_mut_ptr(), size);
            let mut j = i;
            while j > 0
                && compar(
                    base.add((j - 1) * size) as *const c_void,
                    tmp.as_ptr() as *const c_void,
                ) > 0
            {
                std::ptr::copy_nonoverlapping(base.add((j - 1) * size), base.add(j * size), size);
                j -= 1;
            }
            std::ptr::copy_nonoverlapping(tmp.as_ptr(), base.add(j * size), size);
        }
    }
}

/// # Safety
/// C ABI `bsearch`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bsearch(
    key: *const c_void,
    base: *const c_void,
    count: usize,
    size: usize,
    compar: Compare,
) -> *mut c_void {
    let (mut lo, mut hi) = (0usize, count);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        // SAFETY: mid < count.
        let item = unsafe { (base as *const u8).add(mid * size) } as *const c_void;
        // SAFETY: compar is the caller's comparison over valid elements.
        match unsafe { compar(key, item) } {
            0 => return item as *mut c_void,
            c if c < 0 => hi = mid,
            _ => lo = mid + 1,
        }
    }
    std::ptr::null_mut()
}

// libwebp's animation encoder (`mux/anim_encode.c`) formats its error messages with
// `snprintf` and prints warnings to `stderr` with `fprintf`. On wasm32 a C variadic call
// passes its variadic arguments as one pointer after the fixed ones, so these
// definitions have the signatures clang calls. The messages are not formatted: the
// format string itself is copied (what `WebPAnimEncoderGetError` returns stays
// readable), and nothing is printed.

/// `stderr`, as wasi-libc's `stdio.h` declares it (never dereferenced here).
#[unsafe(no_mangle)]
#[allow(non_upper_case_globals)]
pub static stderr: usize = 0;

/// # Safety
/// C ABI `snprintf(buf, size, format, ...)`: `format` is NUL-terminated, `buf` holds
/// `size` bytes (or `size` is 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snprintf(
    buf: *mut u8,
    size: usize,
    format: *const u8,
    _args: *const c_void,
) -> i32 {
    if format.is_null() {
        return -1;
    }
    // SAFETY: `format` is a NUL-terminated C string (the C caller's contract).
    let text = unsafe { std::ffi::CStr::from_ptr(format.cast()) }.to_bytes();
    if !buf.is_null() && size > 0 {
        let n = text.len().min(size - 1);
        // SAFETY: `buf` holds `size` bytes; n + 1 ≤ size.
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), buf, n);
            buf.add(n).write(0);
        }
    }
    i32::try_from(text.len()).unwrap_or(i32::MAX)
}

/// # Safety
/// C ABI `fprintf(stream, format, ...)`: prints nothing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fprintf(
    _stream: *mut c_void,
    _format: *const u8,
    _args: *const c_void,
) -> i32 {
    0
}

/// # Safety
/// C ABI `fwrite` (clang turns a constant `fprintf` into it): writes nothing, reports
/// every item written.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fwrite(
    _data: *const c_void,
    _size: usize,
    count: usize,
    _stream: *mut c_void,
) -> usize {
    count
}
