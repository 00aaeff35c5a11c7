"""Stage 2: the SoLa adapter, Similarity Matching, the unsupervised fit and the transform of stores."""
