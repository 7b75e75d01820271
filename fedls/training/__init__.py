"""Local training and evaluation of classifiers."""
