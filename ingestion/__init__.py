"""Report API ingestion into the PostgreSQL staging schema, and the pipeline that feeds dbt."""
