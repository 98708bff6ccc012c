//! Short lists kept at their exact size: boxed slices that grow and shrink by one item.
//!
//! For lists held per connection or per user that are usually empty or hold an item or two
//! (a user's connections and rooms, a connection's rooms and channels): a `Vec`'s capacity
//! word would always equal its length, and a boxed slice is one word smaller in the struct
//! that holds it. Each change reallocates, which is fine for changes as rare as joins.

/// Adds `item` at the end of `items`, at exact size.
pub(crate) fn push<T>(items: &mut Box<[T]>, item: T) {
    let mut grown = std::mem::take(items).into_vec();
    grown.reserve_exact(1);
    grown.push(item);
    *items = grown.into_boxed_slice();
}

/// Removes the item at `index` (the last item takes its place), at exact size.
pub(crate) fn swap_remove<T>(items: &mut Box<[T]>, index: usize) -> T {
    let mut shrunk = std::mem::take(items).into_vec();
    let item = shrunk.swap_remove(index);
    *items = shrunk.into_boxed_slice();
    item
}

#[cfg(test)]
mod tests {
    #[test]
    fn lists_grow_and_shrink_at_exact_size() {
        let mut items: Box<[u32]> = Box::default();
        for item in [1, 2, 3] {
            super::push(&mut items, item);
        }
        assert_eq!(&*items, [1, 2, 3]);
        assert_eq!(super::swap_remove(&mut items, 0), 1);
        assert_eq!(&*items, [3, 2]);
        assert_eq!(items.into_vec().capacity(), 2, "no spare capacity");
    }
}
