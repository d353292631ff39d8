//! The background miner of [`crate::node::Automine`].

use crate::node::{Automine, Node};

pub(crate) fn spawn(_node: Node, _automine: Automine) {}
