//! Bitcoin Core's mempool policy constants and standardness checks.

use bitcoin::FeeRate;

/// Minimum relay fee rate: 0.1 sat/vB (100 sat/kvB), Core 30's default.
pub const MIN_RELAY_FEE: FeeRate = FeeRate::from_sat_per_kwu(25);
