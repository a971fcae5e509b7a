//! A lab of real Valkey data pods and sentinels, each on its own loopback address.
