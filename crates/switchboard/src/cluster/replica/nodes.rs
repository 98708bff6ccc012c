//! The replica's node table: each other node it has heard of, at a small index that the
//! users' connection counts and room memberships refer to, with its version.

use std::collections::HashMap;

use super::users::NodeIndex;
use super::{Replica, Version};
use crate::ids::NodeId;

/// One other node.
#[derive(Debug)]
pub(super) struct Node {
    pub(super) id: NodeId,
    /// The last announcement applied.
    pub(super) version: Option<Version>,
}

impl Replica {
    /// The index of `id` in the node table, which learns of it if it had not.
    pub(super) fn node(&mut self, id: &NodeId) -> NodeIndex {
        if let Some(&index) = self.node_index.get(id) {
            return index;
        }
        let state = Some(Node {
            id: id.clone(),
            version: None,
        });
        let at = match self.nodes.iter().position(Option::is_none) {
            Some(at) => {
                self.nodes[at] = state;
                at
            }
            None => {
                self.nodes.push(state);
                self.nodes.len() - 1
            }
        };
        // A cluster has far fewer than 65 536 nodes.
        let index = NodeIndex::try_from(at).unwrap_or(NodeIndex::MAX);
        self.node_index.insert(id.clone(), index);
        index
    }

    pub(super) fn node_mut(&mut self, node: NodeIndex) -> &mut Node {
        self.nodes[usize::from(node)]
            .as_mut()
            .unwrap_or_else(|| unreachable!("a node index outlived its node"))
    }

    /// The version of `id`'s state this replica holds: its last announcement applied.
    pub(crate) fn version(&self, id: &NodeId) -> Option<Version> {
        let index = *self.node_index.get(id)?;
        self.nodes[usize::from(index)].as_ref()?.version
    }

    /// Forgets a node that holds nothing any more, and gives back the memory its users took.
    pub(super) fn remove_node(&mut self, node: NodeIndex) {
        if let Some(state) = self.nodes[usize::from(node)].take() {
            self.node_index.remove(&state.id);
        }
        while self.nodes.last().is_some_and(Option::is_none) {
            self.nodes.pop();
        }
        if let Some(moved) = self.users.compact() {
            self.rooms.renumber(&moved);
            self.wide = self
                .wide
                .drain()
                .map(|((room, at), nodes)| ((room, moved[at as usize]), nodes))
                .collect();
        }
        self.rooms.shrink();
        shrink(&mut self.node_index);
    }
}

/// Gives back a map's memory once it is much smaller than its table (not on every removal).
fn shrink<K: Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>) {
    if map.len() * 4 < map.capacity() {
        map.shrink_to_fit();
    }
}
