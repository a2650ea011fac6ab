-- The MLflow tracking server's backend store lives beside the inspections database, in its own database.
CREATE DATABASE mlflow OWNER inspection;
