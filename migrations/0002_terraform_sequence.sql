-- Terraform's pg backend numbers the workspaces of every schema from this one sequence, and its
-- first `terraform init` in a database creates it with CREATE SEQUENCE IF NOT EXISTS: two layers'
-- first inits at once race on it in the catalog, and one fails. Created here, once, under the
-- migration lock, before any terraform runs.
CREATE SEQUENCE IF NOT EXISTS public.global_states_id_seq AS bigint;
