//! The flow canvas's model, free of the browser: where components sit ([`layout`]), what
//! moves between them ([`scene`]) and how the view is zoomed and panned ([`camera`]). The
//! SPA draws it on a 2D canvas; the tests here run on the host.

pub mod camera;
pub mod figures;
pub mod layout;
pub mod replay;
pub mod scene;

pub use camera::Camera;
pub use layout::{EdgeStyle, Layout, Node, NodeId, NodeKind};
pub use replay::Replay;
pub use scene::{Lane, Scene, Sprite, Tint, Visibility};
