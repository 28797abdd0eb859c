use crate::leader_loop::testing::*;
