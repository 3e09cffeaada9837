"""Corruption and perturbation robustness datasets (ImageNet-C/-P, CIFAR-10/100-C/-P, CURE-TSR, CURE-OR)."""
