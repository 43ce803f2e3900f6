"""Tests of the kernel (kernel.js, by node --test) and of tonic's side of its protocol."""
