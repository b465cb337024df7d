"""The `ilm` recipe: infilling language models (Donahue, Lee and Liang, ACL 2020)."""
