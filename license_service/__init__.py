"""The license service: products, activation codes, terms, lifecycle and grants."""
