"""Attention implicit-bias experiments: which max-margin direction an optimiser drives W to.

A softmax-attention layer is trained on a seeded token-selection dataset with GD, normalised GD,
Polyak steps or l_p mirror descent, and its key-query matrix is compared in direction with the
(l_p- / nuclear-norm) attention-SVM solution. Entry point: ``jobs.attention.train:run``.
"""
