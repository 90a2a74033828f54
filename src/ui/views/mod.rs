//! One file per view of the app; each draws from the [`Model`](super::model::Model).

mod call;
mod checks;
mod connection;
mod devices;
mod lobby;
mod notices;
mod panels;
mod pickers;
mod quality;
mod tiles;
pub(crate) mod widgets;
