"""Top-20 predictions as Kaggle submission CSVs, their validation, and upload with the kaggle client."""
