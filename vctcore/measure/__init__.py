"""Measurement of patients from their CT (paper Appendix B)."""
