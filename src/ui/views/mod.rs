//! One file per view of the app; each draws from the [`Model`](super::model::Model).

mod call;
mod devices;
mod lobby;
mod panels;
mod tiles;
pub(crate) mod widgets;
