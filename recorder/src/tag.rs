//! Type tags: [`Trackable`] finds a value's heap block, [`track_value`]
//! records it with the value's type name.

use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

/// A value that owns a heap block which [`crate::track_var!`] can tag.
///
/// The address returned may point anywhere inside the block (the analyzer
/// finds the block that contains it), so interior pointers such as
/// `Rc::as_ptr` or a hash table's first entry work.
pub trait Trackable {
    /// An address inside the value's heap block, or `None` when the value
    /// has no heap block now (an empty `Vec`, a `Box` of a zero-sized type).
    fn heap_address(&self) -> Option<*const u8>;
}

impl<T> Trackable for Vec<T> {
    fn heap_address(&self) -> Option<*const u8> {
        (self.capacity() > 0 && size_of::<T>() > 0).then(|| self.as_ptr().cast())
    }
}

impl Trackable for String {
    fn heap_address(&self) -> Option<*const u8> {
        (self.capacity() > 0).then(|| self.as_ptr())
    }
}

impl<T: ?Sized> Trackable for Box<T> {
    fn heap_address(&self) -> Option<*const u8> {
        (size_of_val::<T>(&**self) > 0).then(|| (&raw const **self).cast())
    }
}

impl<T: ?Sized> Trackable for Rc<T> {
    fn heap_address(&self) -> Option<*const u8> {
        Some(Rc::as_ptr(self).cast())
    }
}

impl<T: ?Sized> Trackable for Arc<T> {
    fn heap_address(&self) -> Option<*const u8> {
        Some(Arc::as_ptr(self).cast())
    }
}

impl<T> Trackable for VecDeque<T> {
    fn heap_address(&self) -> Option<*const u8> {
        if size_of::<T>() == 0 {
            return None;
        }
        let (a, b) = self.as_slices();
        a.first().or(b.first()).map(|x| (x as *const T).cast())
    }
}

impl<K, V, S> Trackable for HashMap<K, V, S> {
    fn heap_address(&self) -> Option<*const u8> {
        self.iter().next().map(|(k, _)| (k as *const K).cast())
    }
}

impl<T, S> Trackable for HashSet<T, S> {
    fn heap_address(&self) -> Option<*const u8> {
        self.iter().next().map(|t| (t as *const T).cast())
    }
}

impl<T: Trackable + ?Sized> Trackable for &T {
    fn heap_address(&self) -> Option<*const u8> {
        (**self).heap_address()
    }
}

impl<T: Trackable + ?Sized> Trackable for &mut T {
    fn heap_address(&self) -> Option<*const u8> {
        (**self).heap_address()
    }
}

/// Tags `value`'s heap block with the name of type `T` and `var_name`.
/// What [`crate::track_var!`] expands to. Does nothing when recording is
/// off or the value has no heap block.
pub fn track_value<T: Trackable + ?Sized>(value: &T, var_name: &'static str) {
    if let Some(address) = value.heap_address() {
        crate::_tag_address(address as u64, std::any::type_name::<T>(), var_name);
    }
}
